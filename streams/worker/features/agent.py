"""The features agent: a thin adapter from ``events`` records to ``UserFeatureState`` and Feast.

Per record, in log order:

1. decode and validate (``decode_event``); an invalid record, or one whose Kafka key is not
   its user_id (its user's state would be split across partitions), is dead-lettered with
   the reason and acknowledged at once: the stream never stops on a bad record;
2. apply it to the user's live state (idempotent on event_id); a late one is dead-lettered;
3. hand the user's state and the Faust event to the micro-batcher.

The batcher writes the rows of its batch to Feast (online + day-partitioned Parquet) and
hands the events back through ``ack``; they wait there for ``persist_and_ack`` (a timer,
every 5 s by default), which has the writer finish what it deferred (``before_ack``: the
rows' offline Parquet), writes every state changed since the last time once to
the Faust table (RocksDB locally + one changelog record per user and interval, not per
event: per-event table writes capped the worker at ~2.3k events/s on the embedded broker
with one record per produce batch), in steps small enough never to stall the stream,
and only then acks the events.

Exactness under a crash, i.e. the ordering of (table update, Feast write, offset commit):

- Feast write and table write both before the offset commit: the stream runs with
  ``noack()``, and an event is acked only after its row reached the online store *and* a
  table write that covers it was sent; Faust flushes the changelog before it commits
  offsets, and commits only offsets below the first unacked record;
- a crash anywhere before the commit leaves the offset uncommitted: the record is replayed
  after the restart; if the recovered state already holds its event_id it answers
  DUPLICATE, and a duplicate *still re-emits the user's current row* (as does a late
  record), so an online row lost with the process is written again; nothing is counted
  twice because the state, not the replay, decides what counts.

That relies on the table recovering every update whose offset was committed (see
``streams.worker.features.app`` on RocksDB and the embedded broker's end offsets).

Table writes need Faust's "current event" (it picks the changelog partition and the local
RocksDB from it), so ``persist`` writes each partition's states under the newest event of
that partition (``faust.streams._current_event``, the context variable Faust sets itself).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from streams.errors import InvalidRecord
from streams.events import decode_event
from streams.features import DEFAULT_CONFIG, ApplyOutcome, FeatureConfig, UserFeatureState
from streams.worker.dead_letters import DeadLetters
from streams.worker.features.batching import MicroBatcher

logger = logging.getLogger(__name__)

#: Live states kept in memory (the table is the truth; this saves a decode per record).
DEFAULT_CACHE_LIMIT = 200_000

#: Table writes per step of a persist (Faust stops the stream past 100 unsent changelog records).
PERSIST_CHUNK = 50


class FeaturesAdapter:
    """Everything the features agent does per record; see the module docstring."""

    def __init__(
        self,
        *,
        table: Any,
        batcher: MicroBatcher,
        dead_letters: DeadLetters,
        config: FeatureConfig = DEFAULT_CONFIG,
        cache_limit: int = DEFAULT_CACHE_LIMIT,
        generation: Callable[[], Any] = lambda: None,
        changelog_backlog: Callable[[], int] = lambda: 0,
        before_ack: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.table = table
        self.batcher = batcher
        self.dead_letters = dead_letters
        self.config = config
        self.cache_limit = cache_limit
        self.generation = generation  # the consumer group generation now (Faust's)
        self.changelog_backlog = changelog_backlog  # table writes not yet handed to the producer
        self.before_ack = before_ack  # what the writer deferred for rows already online (their Parquet)
        self.counts: Counter[str] = Counter()
        self.positions: dict[Any, int] = {}  # TP -> next offset to process
        self.table_writes = 0
        self._states: dict[str, UserFeatureState] = {}
        self._dirty: dict[int, dict[str, UserFeatureState]] = {}  # partition -> changed states
        self._newest: dict[int, Any] = {}  # partition -> its newest event (the write context)
        self._written: list[Any] = []  # events whose rows are online, waiting for a table write

    def forget_states(self) -> None:
        """Drop the in-memory states (on a rebalance: another worker may own them now).

        Unpersisted changes are dropped too: their records were not acked, so they are
        replayed by whoever owns the partition next."""
        self._states.clear()
        self._dirty.clear()
        self._newest.clear()
        self._written.clear()  # never ack an event whose state change was dropped

    @property
    def waiting(self) -> int:
        """Events whose rows are online but which wait for the next table write."""
        return len(self._written)

    def ack(self, event: Any) -> None:
        """The batcher's ack: the event's row is online; it is acked after the next persist.

        An event from before a rebalance is dropped (not acked): ``forget_states`` dropped its
        state change, so it must be replayed, never committed."""
        if getattr(event.message, "generation_id", None) != self.generation():
            return
        self._written.append(event)

    async def persist_and_ack(self) -> None:
        """Write the changed states to the table, then ack every event whose row is online.

        The states are written ``PERSIST_CHUNK`` at a time, each chunk once the changelog
        backlog is below a chunk: past 100 waiting records Faust stops handing records to
        the stream until its producer catches up, and one persist of ~1,000 states then
        held the stream ~0.9 s. If the partitions are reassigned meanwhile, nothing is
        acked (``forget_states`` dropped those changes; their records are replayed)."""
        written, self._written = self._written, []
        generation = self.generation()
        quota = {partition: len(states) for partition, states in self._dirty.items()}
        for partition, count in quota.items():
            while count > 0:
                if self.generation() != generation:
                    return
                count -= self._persist_oldest(partition, min(count, PERSIST_CHUNK))
                while self.changelog_backlog() > PERSIST_CHUNK:
                    await asyncio.sleep(0.005)
        if self.generation() != generation:
            return
        if self.before_ack is not None:
            try:
                await self.before_ack()
            except Exception:  # the offline write failed: ack nothing now, retry at the next persist
                logger.exception("the feature writer's deferred writes failed; acks wait for the next persist")
                self._written[:0] = written
                return
            if self.generation() != generation:
                return
        for event in written:
            try:
                event.ack()
            except Exception:  # noqa: BLE001 - a revoked partition's event: it is replayed anyway
                logger.debug("ack failed", exc_info=True)

    def persist(self) -> None:
        """Write every changed state to the table now."""
        for partition in list(self._dirty):
            self._persist_oldest(partition, len(self._dirty[partition]))

    def _persist_oldest(self, partition: int, count: int) -> int:
        """Write the ``count`` longest-waiting changed states of ``partition``; how many were written.

        Oldest first, so a state changed before a persist began is written by it even while
        new changes keep arriving. The write runs under the partition's newest event."""
        from faust.streams import _current_event

        states = self._dirty.get(partition)
        if not states:
            return 0
        token = _current_event.set(weakref.ref(self._newest[partition]))
        written = 0
        try:
            for user_id in list(itertools.islice(states, count)):
                self.table[user_id] = states.pop(user_id).to_dict()
                self.table_writes += 1
                written += 1
        finally:
            _current_event.reset(token)
        if not states:
            del self._dirty[partition]
            del self._newest[partition]
        return written

    def _state_for(self, user_id: str) -> UserFeatureState:
        state = self._states.get(user_id)
        if state is None:
            raw = self.table.get(user_id)
            state = (
                UserFeatureState(user_id, config=self.config)
                if raw is None
                else UserFeatureState.from_dict(raw, config=self.config)
            )
            if len(self._states) >= self.cache_limit:
                self.persist()  # never drop an unpersisted change
                self._states.clear()
            self._states[user_id] = state
        return state

    async def handle(self, event: Any) -> None:
        """Process one Faust event (raw bytes); never raises for a bad record."""
        message = event.message
        self.positions[message.tp] = message.offset + 1
        self.counts["processed"] += 1
        try:
            record = decode_event(message.value)
            if message.key is not None and message.key != record.user_id.encode("utf-8"):
                raise InvalidRecord(
                    f"key: {message.key[:64]!r} is not the record's user_id {record.user_id!r}"
                )
        except InvalidRecord as exc:
            self.counts["invalid"] += 1
            await self.dead_letters.publish(message, exc, stage="decode")
            event.ack()
            return
        state = self._state_for(record.user_id)
        result = state.apply(record)
        self.counts[result.outcome.value] += 1
        if result.outcome is ApplyOutcome.ACCEPTED:
            self._dirty.setdefault(message.partition, {})[record.user_id] = state
            self._newest[message.partition] = event
        elif result.outcome is ApplyOutcome.LATE:
            await self.dead_letters.publish(message, result.error() or result.reason or "late", stage="features")
        # Accepted or not, the user's current row goes out again: see "exactness" above.
        await self.batcher.add(state, event, message.timestamp * 1000.0)


def install(app: Any, *, topic: Any, adapter: FeaturesAdapter, name: str = "features") -> Any:
    """Register the agent on ``app``; acks are manual (the batcher acks after the Feast write)."""

    async def features(stream: Any) -> None:
        async for event in stream.noack().events():
            await adapter.handle(event)

    features.__name__ = name
    return app.agent(topic, name=name)(features)
