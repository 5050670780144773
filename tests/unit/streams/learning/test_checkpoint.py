"""Learner checkpoints: a learner restored from one and fed the rest of its inputs, replay
included, ends exactly where a learner fed everything without interruption ends."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import MAX_CHECKPOINT_BYTES, Decision, EventType, ListeningEvent, decode_checkpoint, encode
from streams.learning import (
    CheckpointedLearner,
    InvalidLearnerState,
    OfferOutcome,
    OnlineLearner,
    find_checkpoint,
)
from streams.learning.checkpoint import pack
from streams.policies import make_policy
from tests.helpers import T0_MS

MINUTE = 60_000
DECISIONS, EVENTS = "t.decisions", "t.events"
POLICIES = ["epsilon_greedy", "softmax", "linucb", "thompson", "popularity"]
ARMS = ["jazz", "rock", "pop"]

Record = tuple[str, int, bytes]  # topic, partition, value


def factory(name: str):
    return make_policy(name, seed=7)


def fresh(lateness_ms: int) -> CheckpointedLearner:
    online = OnlineLearner(policy_factory=factory, window_ms=30 * MINUTE, allowed_lateness_ms=lateness_ms)
    return CheckpointedLearner(online, decisions_topic=DECISIONS)


def restore(topic: dict[bytes, bytes]) -> CheckpointedLearner:
    """The learner from the newest checkpoint on a compacted topic (``topic``: the newest value per key)."""
    checkpoint = find_checkpoint(topic, "learner")
    assert checkpoint is not None
    return CheckpointedLearner.from_checkpoint(checkpoint, decisions_topic=DECISIONS, policy_factory=factory)


@st.composite
def inputs(draw) -> list[Record]:
    """Decisions and plays of three users over two partitions of each topic, out of order,
    with duplicates re-delivered at later offsets and a few undecodable records."""
    records: list[Record] = []
    users = st.sampled_from(["u1", "u2", "u3"])
    minutes = st.integers(0, 150)
    features = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)
    for number in range(draw(st.integers(1, 60))):
        roll = draw(st.integers(0, 19))
        if roll == 0:
            records.append((draw(st.sampled_from([DECISIONS, EVENTS])), draw(st.integers(0, 1)), b"{"))
        elif roll == 1 and records:
            records.append(draw(st.sampled_from(records)))  # a duplicate: same ids, a later offset
        elif roll < 9:
            arm = draw(st.sampled_from(ARMS))
            decision = Decision(
                decision_id=f"d{number}", user_id=draw(users), ts=T0_MS + draw(minutes) * MINUTE,
                policy=draw(st.sampled_from(POLICIES)), policy_version=0, arm=arm, propensity=0.5, arms=ARMS,
                context={"x": draw(features), "y": draw(features)},
            )
            records.append((DECISIONS, draw(st.integers(0, 1)), encode(decision)))
        else:
            event = ListeningEvent(
                event_id=f"e{number}", user_id=draw(users), ts=T0_MS + draw(minutes) * MINUTE,
                type=draw(st.sampled_from([EventType.PLAY, EventType.PLAY, EventType.SKIP])),
                item_id="i1", genre=draw(st.sampled_from(ARMS)), ms_played=60_000,
            )
            records.append((EVENTS, draw(st.integers(0, 1)), encode(event)))
    return records


def with_offsets(records: list[Record]) -> list[tuple[str, int, int, bytes]]:
    """Each record with its offset: the records of a partition are numbered in log order."""
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for topic, partition, value in records:
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        out.append((topic, partition, offset, value))
    return out


def feed(learner: CheckpointedLearner, log, start: int, stop: int, *, every: int, cuts: set[int]) -> None:
    """Offer ``log[start:stop]``; the watermark moves every ``every`` records and at every cut."""
    for index in range(start, stop):
        learner.offer(*log[index])
        if (index + 1) % every == 0 or index + 1 in cuts:
            learner.advance()


@st.composite
def crashes(draw, size: int) -> list[tuple[int, int]]:
    """Checkpoints taken after ``cut`` records, each followed by a crash and a restart from an
    earlier record ``resume`` (the committed offsets lag the checkpoint, never pass it)."""
    cuts = sorted(draw(st.sets(st.integers(0, size), max_size=3)))
    return [(cut, draw(st.integers(0, cut))) for cut in cuts]


@settings(deadline=None, max_examples=150)
@given(st.data(), st.sampled_from([0, 20 * MINUTE, 2 * 60 * MINUTE]), st.integers(1, 7))
def test_restored_and_replayed_equals_uninterrupted(data, lateness: int, every: int) -> None:
    log = with_offsets(data.draw(inputs()))
    plan = data.draw(crashes(len(log)))
    cuts = {cut for cut, _ in plan}

    uninterrupted = fresh(lateness)
    feed(uninterrupted, log, 0, len(log), every=every, cuts=cuts)
    uninterrupted.advance()

    learner, start, topic = fresh(lateness), 0, {}
    for number, (cut, resume) in enumerate(plan):
        feed(learner, log, start, cut, every=every, cuts=cuts)
        topic.update(learner.checkpoint(learner_id="learner", slot=number % 2).records())
        if cut < len(log):
            learner.offer(*log[cut])  # work done after the checkpoint, lost in the crash
        learner, start = restore(topic), resume
    feed(learner, log, start, len(log), every=every, cuts=cuts)
    learner.advance()

    assert learner.learner.to_state() == uninterrupted.learner.to_state()
    assert learner.positions == uninterrupted.positions
    assert learner.learner.stats() == uninterrupted.learner.stats()
    # Since the last restart, exactly the records between the resume point and the checkpoint were skipped.
    last_cut, last_resume = plan[-1] if plan else (0, 0)
    assert learner.counts[OfferOutcome.REFLECTED.value] == last_cut - last_resume


def test_the_checkpoint_round_trips_through_json() -> None:
    learner = fresh(0)
    log = with_offsets([
        (DECISIONS, 0, encode(Decision(decision_id="d1", user_id="u1", ts=T0_MS, policy="linucb", policy_version=0,
                                       arm="jazz", propensity=0.5, arms=ARMS, context={"x": 0.1}))),
        (EVENTS, 1, encode(ListeningEvent(event_id="e1", user_id="u1", ts=T0_MS + MINUTE, type=EventType.PLAY,
                                          item_id="i1", genre="jazz", ms_played=1))),
        (DECISIONS, 0, encode(Decision(decision_id="d2", user_id="u2", ts=T0_MS + 40 * MINUTE, policy="softmax",
                                       policy_version=0, arm="rock", propensity=0.5, arms=ARMS))),
        (EVENTS, 1, encode(ListeningEvent(event_id="e2", user_id="u2", ts=T0_MS + 41 * MINUTE, type=EventType.PLAY,
                                          item_id="i1", genre="rock", ms_played=1))),
    ])
    for record in log:
        learner.offer(*record)
    assert learner.advance() == 1  # d1 closed with its play; d2 still open, e2 buffered
    checkpoint = learner.checkpoint(learner_id="learner", slot=1)
    records = dict(checkpoint.records())
    assert list(records) == [b"learner/1/0", b"learner"]
    head = json.loads(records[b"learner"])
    assert head["learner_id"] == "learner" and head["parts"] == 1 and head["slot"] == 1
    assert decode_checkpoint(records[b"learner"]) == checkpoint.head
    assert checkpoint.state() == json.loads(json.dumps(learner.learner.to_state()))
    restored = restore(records)
    again = restored.checkpoint(learner_id="learner")
    assert again.state() == checkpoint.state() and again.head.positions == checkpoint.head.positions
    assert (checkpoint.head.seq, again.head.seq) == (0, 1)
    assert restored.learner.joiner.open_decisions == 1 and restored.learner.joiner.buffered_events == 1
    assert restored.learner.policies["linucb"].version == 1
    assert {(p.topic, p.partition, p.offset) for p in checkpoint.head.positions} == {
        (DECISIONS, 0, 2), (EVENTS, 1, 2)}


def test_records_below_the_position_are_reflected_and_a_gap_is_counted() -> None:
    learner = fresh(0)
    event = encode(ListeningEvent(event_id="e1", user_id="u1", ts=T0_MS, type=EventType.PLAY, item_id="i1",
                                  genre="jazz", ms_played=1))
    assert learner.offer(EVENTS, 0, 5, event).outcome is OfferOutcome.APPLIED  # a first offset, whatever it is
    assert learner.offer(EVENTS, 0, 5, event).outcome is OfferOutcome.REFLECTED
    assert learner.offer(EVENTS, 0, 9, event).outcome is OfferOutcome.APPLIED
    assert learner.counts["gaps"] == 1 and learner.positions == {(EVENTS, 0): 10}
    assert learner.learner.joiner.counts["events_duplicate"] == 1  # the joiner still dedupes on event_id


def test_a_malformed_state_is_refused_with_a_reason() -> None:
    state = fresh(0).checkpoint(learner_id="learner").state()
    for bad, reason in [
        ({**state, "format": 99}, "format"),
        ({**state, "policies": {"p": {"policy": "nope"}}}, "nope"),
        ({**state, "joiner": {"format": 1}}, "joiner"),
        ({k: v for k, v in state.items() if k != "newest"}, "newest"),
    ]:
        with pytest.raises(InvalidLearnerState, match=reason):
            OnlineLearner.from_state(bad, policy_factory=factory)


def test_a_large_state_is_split_into_parts_each_under_the_record_limit() -> None:
    rng = random.Random(3)
    state = {"noise": [rng.getrandbits(64) for _ in range(300_000)]}  # ~6 MB of JSON, ~2.7 MB compressed
    checkpoint = pack(state, learner_id="learner", seq=4, ts=T0_MS, positions=[], slot=1)
    records = checkpoint.records()
    assert checkpoint.head.parts >= 4 and len(records) == checkpoint.head.parts + 1
    assert all(len(value) <= MAX_CHECKPOINT_BYTES for _, value in records)
    found = find_checkpoint(dict(records), "learner")
    assert found is not None and found.state() == state


def test_a_crash_while_writing_leaves_the_stored_checkpoint_intact() -> None:
    learner = fresh(0)
    learner.offer(DECISIONS, 0, 0, encode(Decision(decision_id="d1", user_id="u1", ts=T0_MS, policy="softmax",
                                                   policy_version=0, arm="jazz", propensity=0.5, arms=ARMS)))
    topic = dict(learner.checkpoint(learner_id="learner", slot=0).records())
    learner.offer(DECISIONS, 0, 1, b"{")
    *parts, _head = learner.checkpoint(learner_id="learner", slot=1).records()
    topic.update(parts)  # the parts of the next one were written, its head was not
    restored = restore(topic)
    assert restored.positions == {(DECISIONS, 0): 1} and restored.seq == 1


def test_parts_that_do_not_match_their_head_are_refused() -> None:
    first = dict(fresh(0).checkpoint(learner_id="learner", slot=0).records())
    second = dict(fresh(0).checkpoint(learner_id="learner", slot=0).records())
    with pytest.raises(InvalidLearnerState, match="part 0"):
        find_checkpoint({**first, b"learner/0/0": second[b"learner/0/0"]}, "learner")
    with pytest.raises(InvalidLearnerState, match="missing"):
        find_checkpoint({b"learner": first[b"learner"]}, "learner")
    assert find_checkpoint({}, "learner") is None
