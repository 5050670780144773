"""The online learner: event-time windows over several partitions, idempotent updates, snapshots."""

from __future__ import annotations

from streams.events import Decision, EventType, ListeningEvent
from streams.learning.learner import OnlineLearner
from streams.policies import make_policy, policy_from_state
from tests.helpers import T0_MS

MINUTE = 60_000


def decision(number: int, *, ts: int, arm: str = "jazz", policy: str = "popularity") -> Decision:
    return Decision(decision_id=f"d{number}", user_id=f"u{number}", ts=ts, policy=policy, policy_version=0,
                    arm=arm, propensity=0.5, arms=["jazz", "rock"], context={"plays_1h": 1.0})


def play(number: int, *, user: str, ts: int, genre: str = "jazz") -> ListeningEvent:
    return ListeningEvent(event_id=f"e{number}", user_id=user, ts=ts, type=EventType.PLAY,
                          item_id=f"{genre}-1", genre=genre, ms_played=120_000)


def learner(**options) -> OnlineLearner:
    return OnlineLearner(policy_factory=lambda name: make_policy(name, seed=1, epsilon=0.5),
                         window_ms=30 * MINUTE, allowed_lateness_ms=0, **options)


def test_a_window_closes_only_when_every_partition_has_passed_it() -> None:
    online = learner()
    online.add_decision(decision(1, ts=T0_MS), ("decisions", 0))
    online.add_event(play(1, user="u1", ts=T0_MS + MINUTE), ("events", 0))
    online.add_event(play(2, user="u9", ts=T0_MS + 60 * MINUTE), ("events", 0))
    online.declare(("events", 1))  # assigned, silent: holds the watermark back
    assert online.advance() == 0
    online.add_event(play(3, user="u8", ts=T0_MS + 31 * MINUTE), ("events", 1))
    online.add_decision(decision(2, ts=T0_MS + 31 * MINUTE, arm="rock"), ("decisions", 0))
    assert online.watermark == T0_MS + 31 * MINUTE
    assert online.advance() == 1
    assert online.policies["popularity"].version == 1
    assert online.policies["popularity"].params()["epsilon"] == 0.5  # built with the variant's params


def test_replayed_records_update_nothing_twice() -> None:
    online = learner()
    for _ in range(2):
        online.add_decision(decision(1, ts=T0_MS), ("decisions", 0))
        online.add_event(play(1, user="u1", ts=T0_MS + MINUTE), ("events", 0))
    online.add_event(play(2, user="u2", ts=T0_MS + 40 * MINUTE), ("events", 0))
    online.add_decision(decision(3, ts=T0_MS + 40 * MINUTE), ("decisions", 0))
    assert online.advance() == 1
    online.add_decision(decision(1, ts=T0_MS), ("decisions", 0))  # after its window closed: late
    assert online.advance() == 0
    assert online.updates == 1 and online.late == 1


def test_snapshots_follow_updates_or_time_and_round_trip() -> None:
    now = [0.0]
    online = learner(snapshot_every_updates=2, snapshot_every_s=10.0, clock=lambda: now[0])
    assert online.due_snapshots() == []
    for number in range(3):
        online.add_decision(decision(number, ts=T0_MS + number), ("decisions", 0))
    online.add_event(play(9, user="u9", ts=T0_MS + 40 * MINUTE), ("events", 0))
    online.add_decision(decision(9, ts=T0_MS + 40 * MINUTE), ("decisions", 0))
    assert online.advance() == 3
    (snapshot,) = online.due_snapshots()  # three updates: past the count
    assert snapshot.policy == "popularity" and snapshot.version == 3
    restored = policy_from_state(snapshot.state)
    assert restored.version == 3 and restored.params() == online.policies["popularity"].params()
    assert online.due_snapshots() == []  # nothing new since
