"""A short seeded version of chaos scenario 1: the aggregator and the archiver SIGKILLed mid-work,
restarted by the harness, and their outputs equal to the oracles from the topics.

(The Faust workers' version runs in ``make chaos``; their own SIGKILL tests are
tests/integration/test_features_worker.py and test_learner_recovery.py.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec
from infra.chaos.crashes import T0_MS, WORKERS, crash_worker, experiment_log, learner_log
from infra.chaos.stack import chaos_stack


def small_log(spec, seed, quick):  # type: ignore[no-untyped-def]
    return (experiment_log(spec, users=25, days=16, seed=seed)
            + [r for r in learner_log(decisions=120, users=25, seed=seed) if r[0] == "decisions"])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["aggregator", "archiver"])
def test_sigkilled_worker_output_equals_the_oracle(name: str, tmp_path: Path) -> None:
    worker = dataclasses.replace(next(w for w in WORKERS if w.name == name), log=small_log)
    spec = load_spec(DEMO_SPEC_PATH)
    with chaos_stack(tmp_path / name, prefix=f"crash-{name}.") as stack:
        publish_spec(stack.settings, apply_spec(None, spec, who="chaos", at=T0_MS))
        figures = crash_worker(stack, worker, spec, kills=1, seed=20, quick=True)
    assert figures["kills"] == 1 and figures["killed_mid_work"] == 1, figures
    assert figures["exact"] is True, figures
    if name == "aggregator":
        assert figures["differences"] == 0 and figures["closed_windows"] > 0, figures
    else:
        assert figures["lost"] == 0 and figures["twice"] == 0 and figures["events"]["archived"] > 0, figures
