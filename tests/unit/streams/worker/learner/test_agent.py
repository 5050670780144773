"""The learner agent's adapter without Faust: records are acknowledged only once a stored
checkpoint covers them, never after a failed store or across a rebalance."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from streams.events import Decision, EventType, ListeningEvent, decode_checkpoint, encode
from streams.learning import CheckpointedLearner, OnlineLearner
from streams.policies import make_policy
from streams.worker.dead_letters import DeadLetters
from streams.worker.learner.agent import LearnerAdapter
from tests.helpers import T0_MS

DECISIONS, EVENTS = "t.decisions", "t.events"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes = b"u1"
    generation_id: int = 1


@dataclass
class Event:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class Sent:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    async def send(self, *, key: bytes | None = None, value: bytes, **_: Any) -> None:
        self.records.append((key, value))


class Harness:
    def __init__(self, *, stored: dict | None = None) -> None:
        self.learner = CheckpointedLearner(OnlineLearner(policy_factory=lambda name: make_policy(name, seed=1)),
                                           decisions_topic=DECISIONS)
        self.checkpoints: list[list[tuple[bytes, bytes]]] = []
        self.refuse = False
        self.generation = 1
        self.letters = Sent()
        self.adapter = LearnerAdapter(
            self.learner, learner_id="app", stored=stored or {}, slot=0, send_checkpoint=self.store,
            send_snapshot=self.snapshot, dead_letters=DeadLetters(self.letters), generation=lambda: self.generation,
        )
        self.offsets: dict[tuple[str, int], int] = {}

    async def store(self, records: list[tuple[bytes, bytes]]) -> None:
        if self.refuse:
            raise OSError("broker unavailable")
        self.checkpoints.append(records)

    async def snapshot(self, snapshot: Any) -> None: ...

    def event(self, topic: str, value: bytes, *, partition: int = 0, offset: int | None = None) -> Event:
        if offset is None:
            offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        return Event(Message(topic, partition, offset, value, generation_id=self.generation))

    def handle(self, *events: Event) -> None:
        for event in events:
            asyncio.run(self.adapter.handle(event))


def decision(number: int) -> bytes:
    return encode(Decision(decision_id=f"d{number}", user_id="u1", ts=T0_MS + number, policy="softmax",
                           policy_version=0, arm="jazz", propensity=0.5, arms=["jazz", "rock"]))


def play(number: int) -> bytes:
    return encode(ListeningEvent(event_id=f"e{number}", user_id="u1", ts=T0_MS + number, type=EventType.PLAY,
                                 item_id="i1", genre="jazz", ms_played=1))


def test_acks_wait_for_a_stored_checkpoint_that_covers_them() -> None:
    harness = Harness()
    events = [harness.event(DECISIONS, decision(1)), harness.event(EVENTS, play(2)), harness.event(EVENTS, play(3))]
    harness.handle(*events)
    assert not any(event.acked for event in events)
    assert asyncio.run(harness.adapter.checkpoint()) is True
    assert all(event.acked for event in events)
    *parts, (key, head) = harness.checkpoints[-1]
    stored = decode_checkpoint(head)
    assert key == b"app" and [k for k, _ in parts] == [b"app/1/0"]  # the slot the stored one (0) does not use
    assert {(p.topic, p.partition, p.offset) for p in stored.positions} == {(DECISIONS, 0, 1), (EVENTS, 0, 2)}
    assert harness.adapter.slot == 1
    assert asyncio.run(harness.adapter.checkpoint()) is False  # nothing waits: nothing written


def test_a_failed_store_acks_nothing_and_the_next_checkpoint_covers_it() -> None:
    harness = Harness()
    first = harness.event(DECISIONS, decision(1))
    harness.handle(first)
    harness.refuse = True
    assert asyncio.run(harness.adapter.checkpoint()) is False
    assert not first.acked and harness.adapter.failures == 1
    assert harness.adapter.slot == 0  # the stored checkpoint's parts: still the ones to keep
    second = harness.event(DECISIONS, decision(2))
    harness.handle(second)
    harness.refuse = False
    assert asyncio.run(harness.adapter.checkpoint()) is True
    assert first.acked and second.acked
    assert [key for key, _ in harness.checkpoints[-1]] == [b"app/1/0", b"app"]


def test_records_of_an_old_generation_are_never_acked_and_their_copies_are() -> None:
    harness = Harness()
    before = [harness.event(DECISIONS, decision(1)), harness.event(DECISIONS, decision(2))]
    harness.handle(*before)
    harness.generation = 2  # a rebalance: Faust seeks back to the committed offset (0)
    harness.adapter.forget_waiting()
    copies = [harness.event(DECISIONS, decision(1), offset=0), harness.event(DECISIONS, decision(2), offset=1)]
    harness.handle(*copies)
    assert harness.learner.counts["reflected"] == 2  # the state already holds them
    asyncio.run(harness.adapter.checkpoint())
    assert not any(event.acked for event in before) and all(event.acked for event in copies)


def test_a_rebalance_during_the_store_acks_nothing() -> None:
    harness = Harness()
    event = harness.event(DECISIONS, decision(1))
    harness.handle(event)

    async def store_during_rebalance(records: list[tuple[bytes, bytes]]) -> None:
        harness.generation = 2
        harness.checkpoints.append(records)

    harness.adapter.send_checkpoint = store_during_rebalance
    assert asyncio.run(harness.adapter.checkpoint()) is True
    assert not event.acked
    assert harness.adapter.stored == {(DECISIONS, 0): 1}  # but the stored positions are known


def test_records_a_stored_checkpoint_holds_are_acked_at_once() -> None:
    harness = Harness(stored={(DECISIONS, 0): 1})
    harness.learner.positions[(DECISIONS, 0)] = 1
    replayed = harness.event(DECISIONS, decision(1), offset=0)
    harness.handle(replayed)
    assert replayed.acked and not harness.adapter.waiting


def test_an_undecodable_decision_is_dead_lettered_and_acked_with_the_checkpoint() -> None:
    harness = Harness()
    bad = harness.event(DECISIONS, b'{"decision_id": ')
    harness.handle(bad)
    assert len(harness.letters.records) == 1 and not bad.acked
    asyncio.run(harness.adapter.checkpoint())
    assert bad.acked
    bad_event = harness.event(EVENTS, b"{")
    harness.handle(bad_event)
    assert len(harness.letters.records) == 1  # bad events are the features agent's to report


DAY_MS = 24 * 3600 * 1000


def test_an_assigned_partition_not_read_yet_holds_the_watermark() -> None:
    """The hostile-input finding: the worker read a batch of plays days ahead on the events partitions
    before the decisions partition delivered anything; the watermark passed the decisions, all late."""
    harness = Harness()
    harness.adapter.hold([(DECISIONS, 0), (EVENTS, 0)])
    later = [encode(ListeningEvent(event_id=f"x{n}", user_id="u2", ts=T0_MS + 3 * DAY_MS + n, type=EventType.PLAY,
                                   item_id="i1", genre="jazz", ms_played=1)) for n in range(400)]
    harness.handle(*(harness.event(EVENTS, value) for value in later))  # two periodic advances
    harness.handle(harness.event(DECISIONS, decision(1)))
    assert harness.learner.learner.late == 0 and harness.learner.learner.joiner.open_decisions == 1
    asyncio.run(harness.adapter.checkpoint())
    assert harness.learner.learner.updates == 0  # the decision's partition holds its window open


def test_without_holding_the_first_partition_read_makes_the_others_late() -> None:
    harness = Harness()
    later = [encode(ListeningEvent(event_id=f"x{n}", user_id="u2", ts=T0_MS + 3 * DAY_MS + n, type=EventType.PLAY,
                                   item_id="i1", genre="jazz", ms_played=1)) for n in range(200)]
    harness.handle(*(harness.event(EVENTS, value) for value in later))
    harness.handle(harness.event(DECISIONS, decision(1)))
    assert harness.learner.learner.late == 1  # what the worker did before it held its assigned partitions


def test_a_partition_read_to_its_end_without_a_valid_record_stops_holding() -> None:
    harness = Harness()
    read: set[tuple[str, int]] = set()
    harness.adapter.caught_up = lambda partition: partition in read
    harness.adapter.hold([(DECISIONS, 0), (DECISIONS, 1), (EVENTS, 0)])
    harness.handle(harness.event(DECISIONS, decision(1)), harness.event(EVENTS, play(2)),
                   harness.event(DECISIONS, b"{", partition=1))
    asyncio.run(harness.adapter.checkpoint())
    assert harness.learner.learner.watermark is None  # decisions[1] may still deliver a valid record
    read.add((DECISIONS, 1))  # read to its end: bad records only
    harness.handle(*(harness.event(EVENTS, play(n)) for n in range(3, 3 + 60 * 60 * 1000, 60_000)))
    asyncio.run(harness.adapter.checkpoint())
    assert (DECISIONS, 1) not in harness.learner.learner.newest
    assert harness.learner.learner.watermark is not None
