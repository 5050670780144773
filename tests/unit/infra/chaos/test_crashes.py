"""The crash scenario's logs: in event-time order, split into waves without loss or repetition."""

from __future__ import annotations

import json

from experiments.spec import DEMO_SPEC_PATH, load_spec
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
