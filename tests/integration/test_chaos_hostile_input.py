"""A short seeded version of chaos scenario 3: bad records of every kind interleaved with a valid log;
the aggregator, the archiver and the learner dead-letter every bad one (with a reason) and no valid one;
the aggregator's and archiver's figures are those of the valid records alone, with the last good spec
kept, and the learner ends in the state of an uninterrupted learner fed the topics (its oracle).

(The features worker and serving read the same log in ``make chaos``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiments.aggregation.store import STAGE as AGGREGATION_STAGE
from experiments.batch.archiver import STAGE as ARCHIVE_STAGE
from experiments.lifecycle import apply_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from infra.chaos import crashes, oracles
from infra.chaos.hostile_input import HOSTILE_KEY, LEARNER_STAGE, _dead_letter_check, hostile_log
from infra.chaos.stack import ChaosStack, chaos_stack, wait_until
from infra.kafka.topics import EXPERIMENTS


def _positions(checkpoint: Any) -> dict[tuple[str, int], int] | None:
    return None if checkpoint is None else {(p.topic, p.partition): p.offset for p in checkpoint.head.positions}


def _running(stack: ChaosStack, name: str) -> None:
    if stack.supervisor.processes[name].poll() is not None:
        raise RuntimeError(f"{name} exited: {stack.log_tail(name)}")


@pytest.mark.timeout(600)
def test_bad_records_are_dead_letters_and_valid_ones_count(tmp_path: Path) -> None:
    spec = apply_spec(None, load_spec(DEMO_SPEC_PATH), who="chaos", at=crashes.T0_MS)
    good = spec_to_json(spec)
    records, kinds = hostile_log(spec, bad=120, seed=21, quick=True)
    assert kinds["experiments/invalid_spec"] >= 3 and kinds["exposures/unknown_experiment"] > 0
    with chaos_stack(tmp_path, prefix="hostile.") as stack:
        crashes.publish(stack.settings, [("experiments", spec.id.encode(), good), *records])
        stack.start("aggregator", "experiments", "aggregate", "--allowed-lateness", "30m", "--idle-exit", "4")
        stack.start("archiver", "archive", "run", "--flush-interval", "0.3", "--idle-exit", "4")
        stack.start("learner", "learner", "run")
        assert stack.wait_exit("aggregator", timeout_s=400) == 0, stack.log_tail("aggregator")
        assert stack.wait_exit("archiver", timeout_s=400) == 0, stack.log_tail("archiver")
        learner_expected, ends = oracles.learner_oracle(stack.settings)
        wait_until(lambda: _positions(crashes._newest_checkpoint(stack.settings)) == ends,  # noqa: SLF001
                   timeout_s=400, what="a learner checkpoint covering every input record",
                   alive=lambda: _running(stack, "learner"), interval_s=0.5)
        stack.supervisor.stop_all()
        learner_state = crashes._newest_checkpoint(stack.settings).state()  # noqa: SLF001
        letters = _dead_letter_check(stack, good)
        settings = stack.settings
        expected, _ = oracles.aggregation_oracle(
            settings, spec.id, keep=lambda r: not (r.key or b"").startswith(HOSTILE_KEY) and (
                r.topic != settings.topic(EXPERIMENTS) or r.value == good))
        published = oracles.published_metrics(settings, spec.id)
        archive = oracles.archive_check(settings)
    for stage in (AGGREGATION_STAGE, ARCHIVE_STAGE, LEARNER_STAGE):
        figures = letters[stage]
        assert figures["bad_records_read"] > (30 if stage == LEARNER_STAGE else 50), figures
        assert figures["not_dead_lettered"] == 0 and figures["without_reason"] == 0, figures
        assert figures["valid_dead_lettered"] == 0, figures
    assert expected and oracles.differences(published, expected) == []
    assert {key.split("/")[1] for key in published} == {v.name for v in spec.variants}  # the last good spec's
    assert all(a["missing"] == 0 and a["twice"] == 0 and a["archived"] > 0 for a in archive.values()), archive
    # the state of an uninterrupted learner fed the topics, and one that learned (the bug left 0-490 updates)
    assert learner_state["updates"] == learner_expected.learner.updates > 0, learner_state["updates"]
    assert learner_state["late"] == 0
    assert oracles.comparable_learner_state(learner_state) == oracles.comparable_learner_state(
        learner_expected.learner.to_state())
