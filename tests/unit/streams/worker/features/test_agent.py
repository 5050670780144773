"""The features adapter with fakes for Faust: log order, dedupe, late and bad records, table writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from streams.events import DeadLetter, encode
from streams.features import UserFeatureState
from streams.worker.dead_letters import DeadLetters
from streams.worker.features.agent import PERSIST_CHUNK, FeaturesAdapter
from streams.worker.features.batching import MicroBatcher
from tests.helpers import make_event


@dataclass
class Message:
    value: bytes
    key: bytes | None
    offset: int
    topic: str = "t.events"
    partition: int = 0
    timestamp: float = 1_700_000_000.0

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class Topic:
    sent: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, *, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


class Table(dict):
    writes = 0

    def __setitem__(self, key, value) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def run(records: list[tuple[bytes | None, bytes]]):
    written: list[dict] = []
    table, topic = Table(), Topic()

    async def scenario() -> FeaturesAdapter:
        batcher = MicroBatcher(write=written.extend, ack=lambda event: adapter.ack(event), max_records=3,
                               max_delay_ms=10_000)
        adapter = FeaturesAdapter(table=table, batcher=batcher, dead_letters=DeadLetters(topic))
        for offset, (key, value) in enumerate(records):
            event = Event(Message(value=value, key=key, offset=offset))
            events.append(event)
            await adapter.handle(event)
            if offset == 2:
                await batcher.drain()
                assert not events[0].acked  # its row is online, but the table write is still to come
                await adapter.persist_and_ack()
        await batcher.drain()
        await adapter.persist_and_ack()
        return adapter

    events: list[Event] = []
    adapter = asyncio.run(scenario())
    return adapter, written, table, topic, events


def test_rows_match_the_pure_state_and_duplicates_are_no_ops_that_reemit_the_row() -> None:
    evs = [make_event(n, user="u1") for n in range(5)]
    records = [(b"u1", encode(e)) for e in [*evs, evs[2]]]
    adapter, written, table, _, events = run(records)
    oracle = UserFeatureState("u1")
    for e in evs:
        oracle.apply(e)
    assert adapter.counts["accepted"] == 5 and adapter.counts["duplicate"] == 1
    assert table.writes == 2  # once per user and batch, before the batch's write
    assert table["u1"] == oracle.to_dict()
    last = written[-1]
    assert {k: last[k] for k in oracle.features()} == oracle.features()
    assert len(written) == 2  # one row per user per flush (3 records, then 3)
    assert all(event.acked for event in events)
    assert adapter.positions[("t.events", 0)] == 6


def test_bad_and_late_records_are_dead_lettered_and_the_next_ones_processed() -> None:
    late = make_event(100, user="u1", ts=make_event(0).ts - 3_600_000)
    records = [
        (b"u1", encode(make_event(1, user="u1"))),
        (b"u1", b"{not json"),
        (b"u2", encode(make_event(2, user="u1"))),  # key is not the user_id
        (b"u1", encode(late)),
        (b"u1", encode(make_event(3, user="u1"))),
    ]
    adapter, written, _, topic, events = run(records)
    letters = [DeadLetter.model_validate_json(value) for _, value in topic.sent]
    assert [(letter.offset, letter.stage) for letter in letters] == [(1, "decode"), (2, "decode"), (3, "features")]
    assert "malformed JSON" in letters[0].error and "key" in letters[1].error
    assert "allowed lateness" in letters[2].error and letters[2].error_type == "LateEvent"
    assert letters[0].raw_value() == b"{not json"
    assert all(key == b"t.events" for key, _ in topic.sent)
    assert adapter.counts["accepted"] == 2 and written[-1]["plays_1h"] == 2
    assert all(event.acked for event in events)


class Changelog:
    """A producer backlog that shrinks by ``drain_per_check`` each time it is looked at."""

    def __init__(self, table: Table, drain_per_check: int) -> None:
        self.table, self.drain_per_check, self.sent = table, drain_per_check, 0

    def backlog(self) -> int:
        self.sent = min(self.table.writes, self.sent + self.drain_per_check)
        return self.table.writes - self.sent


def test_a_persist_writes_in_chunks_under_the_backlog_limit_while_records_keep_coming() -> None:
    table = Table()
    changelog = Changelog(table, drain_per_check=2)
    written: list[dict] = []
    peak_backlog = 0

    def backlog() -> int:
        nonlocal peak_backlog
        waiting = changelog.backlog()
        peak_backlog = max(peak_backlog, waiting)
        return waiting

    async def scenario() -> tuple[FeaturesAdapter, list[Event], list[Event]]:
        batcher = MicroBatcher(write=written.extend, ack=lambda event: adapter.ack(event), max_records=1000,
                               max_delay_ms=10_000)
        adapter = FeaturesAdapter(table=table, batcher=batcher, dead_letters=DeadLetters(Topic()),
                                  changelog_backlog=backlog)
        before = [Event(Message(value=encode(make_event(n, user=f"u{n}")), key=f"u{n}".encode(), offset=n))
                  for n in range(300)]
        for event in before:
            await adapter.handle(event)
        await batcher.drain()
        persisting = asyncio.ensure_future(adapter.persist_and_ack())
        during = []
        for n in range(300, 340):  # the stream goes on while the persist waits for the changelog
            await asyncio.sleep(0)
            user = f"u{n % 5}"
            event = Event(Message(value=encode(make_event(n, user=user)), key=user.encode(), offset=n))
            during.append(event)
            await adapter.handle(event)
        assert not persisting.done()
        await persisting
        return adapter, before, during

    adapter, before, during = asyncio.run(scenario())
    assert all(event.acked for event in before)
    assert not any(event.acked for event in during)  # their rows are not online yet
    assert peak_backlog <= 2 * PERSIST_CHUNK
    assert set(table) == {f"u{n}" for n in range(300)}
    assert table["u7"] == UserFeatureState.from_dict(table["u7"]).to_dict()


def test_a_persist_interrupted_by_a_rebalance_acks_nothing() -> None:
    table = Table()
    generation = [1]

    def backlog() -> int:
        generation[0] = 2  # the partitions were reassigned while the first chunk was sent
        return 0

    async def scenario() -> list[Event]:
        batcher = MicroBatcher(write=lambda rows: None, ack=lambda event: adapter.ack(event), max_records=1000,
                               max_delay_ms=10_000)
        adapter = FeaturesAdapter(table=table, batcher=batcher, dead_letters=DeadLetters(Topic()),
                                  generation=lambda: generation[0], changelog_backlog=backlog)
        events = [Event(Message(value=encode(make_event(n, user=f"u{n}")), key=f"u{n}".encode(), offset=n))
                  for n in range(2 * PERSIST_CHUNK)]
        for event in events:
            event.message.generation_id = 1  # type: ignore[attr-defined]
            await adapter.handle(event)
        await batcher.drain()
        await adapter.persist_and_ack()
        return events

    events = asyncio.run(scenario())
    assert table.writes == PERSIST_CHUNK
    assert not any(event.acked for event in events)


def test_events_are_acked_only_after_the_writers_deferred_writes_and_kept_when_they_fail() -> None:
    calls: list[str] = []
    fail = [True]

    async def deferred() -> None:
        calls.append("deferred")
        if fail[0]:
            raise OSError("disk full")

    async def scenario() -> list[Event]:
        batcher = MicroBatcher(write=lambda rows: calls.append("write"), ack=lambda event: adapter.ack(event),
                               max_records=1000, max_delay_ms=10_000)
        adapter = FeaturesAdapter(table=Table(), batcher=batcher, dead_letters=DeadLetters(Topic()),
                                  before_ack=deferred)
        events = [Event(Message(value=encode(make_event(n, user=f"u{n}")), key=f"u{n}".encode(), offset=n))
                  for n in range(3)]
        for event in events:
            await adapter.handle(event)
        await batcher.drain()
        await adapter.persist_and_ack()  # the deferred writes fail: nothing is acked, nothing dropped
        assert not any(event.acked for event in events) and adapter.waiting == 3
        fail[0] = False
        await adapter.persist_and_ack()
        return events

    events = asyncio.run(scenario())
    assert all(event.acked for event in events)
    assert calls == ["write", "deferred", "deferred"]
