"""The crash scenario's logs (in event-time order, split into waves without loss or repetition) and
its kill schedule."""

from __future__ import annotations

import json

import pytest

from experiments.spec import DEMO_SPEC_PATH, load_spec
from infra.chaos import crashes
from infra.chaos.crashes import experiment_log, learner_log, waves


def test_waves_split_the_log_in_order_without_loss() -> None:
    log = [("events", b"k", str(i).encode()) for i in range(103)]
    for count in (1, 3, 21):
        parts = waves(log, count)
        assert len(parts) <= count and all(parts)
        assert [record for part in parts for record in part] == log


def test_the_logs_are_in_event_time_order_so_nothing_is_late() -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    for log in (experiment_log(spec, users=30, days=10, seed=1), learner_log(decisions=200, users=10, seed=1)):
        times = [json.loads(value)["ts"] for _, _, value in log]
        assert times == sorted(times)
        ids = [json.loads(value).get("event_id") or json.loads(value).get("exposure_id")
               or json.loads(value)["decision_id"] for _, _, value in log]
        assert len(ids) == len(set(ids))  # every record has an id of its own
    roles = {role for role, _, _ in learner_log(decisions=200, users=10, seed=1)}
    assert roles == {"decisions", "events"}


class FakeStack:
    """Starts and kills nothing; a started run makes progress at once."""

    def __init__(self) -> None:
        self.settings = None
        self.events: list[tuple[str, int]] = []
        self.pid = 0
        self.supervisor = type("Supervisor", (), {"check": staticmethod(lambda: None)})()

    def start(self, name: str, *argv: str) -> int:
        self.pid += 1
        self.events.append(("start", self.pid))
        return self.pid

    def sigkill(self, name: str) -> None:
        self.events.append(("kill", self.pid))


def test_a_quarter_of_the_kills_come_while_starting_never_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crashes, "publish", lambda settings, wave: None)
    monkeypatch.setattr(crashes.time, "sleep", lambda seconds: None)
    stack = FakeStack()
    worker = crashes.StatefulWorker(
        "fake", ("x",), lambda spec, seed, quick: [("events", b"k", str(i).encode()) for i in range(100)],
        lambda stack, pid: pid, False, lambda stack: None, lambda stack, spec: {"exact": True})
    spec = load_spec(DEMO_SPEC_PATH)
    figures = crashes.crash_worker(stack, worker, spec, kills=20, seed=20, quick=False)  # type: ignore[arg-type]
    assert figures["killed_while_starting"] == 5 and figures["killed_mid_work"] == 15
    assert [kind for kind, _ in stack.events] == ["start", "kill"] * 20
    short = [crashes.crash_worker(FakeStack(), worker, spec, kills=kills, seed=20, quick=True)  # type: ignore[arg-type]
             for kills in (1, 2)]
    assert [(f["killed_mid_work"], f["killed_while_starting"]) for f in short] == [(1, 0), (1, 1)]
