"""The worker's command line: each role takes its own options, and the learner refuses the features worker's."""

from __future__ import annotations

from typing import Any

import pytest

from streams.worker import runner


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``main`` would start, recorded instead of started."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(runner, "load_settings", lambda: "settings")
    monkeypatch.setattr(runner, "run_worker", lambda settings, **kw: calls.update(role="features", **kw) or 0)
    monkeypatch.setattr(runner, "run_learner", lambda settings, **kw: calls.update(role="learner", **kw) or 0)
    return calls


def test_the_features_worker_gets_its_defaults_and_its_options(started: dict[str, Any]) -> None:
    assert runner.main([]) == 0
    assert (started["role"], started["flush_records"], started["flush_ms"], started["store"]) == (
        "features", 1000, 10.0, None)
    assert started["one_record_per_batch"] is None and "persist_interval_s" not in started
    runner.main(["--flush-records", "50", "--changelog-batches", "--persist-interval", "2"])
    assert (started["flush_records"], started["one_record_per_batch"], started["persist_interval_s"]) == (
        50, False, 2.0)


def test_the_learner_refuses_the_features_workers_options(
    started: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(["--role", "learner", "--commit-interval", "1"]) == 0
    assert started == {"role": "learner", "loglevel": "warning", "status_interval_s": 1.0, "commit_interval_s": 1.0}
    started.clear()
    with pytest.raises(SystemExit) as exit_:
        runner.main(["--role", "learner", "--flush-ms", "5", "--store", "memory://"])
    assert exit_.value.code == 2 and started == {}
    assert "--flush-ms, --store: options of the features worker, not of the learner" in capsys.readouterr().err
