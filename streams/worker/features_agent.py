"""The features agent: a thin adapter from ``events`` records to ``UserFeatureState`` and Feast.

Per record, in log order:

1. decode and validate (``decode_event``); an invalid record, or one whose Kafka key is not
   its user_id (its user's state would be split across partitions), is dead-lettered with
   the reason and acknowledged at once: the stream never stops on a bad record;
2. apply it to the user's state (idempotent on event_id); an accepted event writes the state
   to the Faust table (RocksDB locally + changelog); a late one is dead-lettered;
3. hand the user's live state and the Faust event to the micro-batcher, which writes the
   user's row to Feast (online + day-partitioned Parquet) and only *then* acks the event.

Exactness under a crash, i.e. the ordering of (table update, Feast write, offset commit):

- the table is updated first (step 2), the Feast write follows, and the offset is committed
  last: the stream runs with ``noack()``, so Faust can commit an offset only once every
  record up to it has been acknowledged by the batcher, after its row reached the online store;
- a crash between the table update and the Feast write leaves an uncommitted offset: the
  record is replayed after the restart, the (recovered) state finds its event_id and
  answers DUPLICATE, and a duplicate *still re-emits the user's current row* (as does a
  late record); so the online row that was lost with the process is written again, and
  nothing is counted twice because the state, not the replay, decides what counts.

That relies on the table recovering every update whose offset was committed (see
``streams.worker.app`` on RocksDB and the embedded broker's end offsets).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from streams.errors import InvalidRecord
from streams.events import decode_event
from streams.features import DEFAULT_CONFIG, FeatureConfig, Outcome, UserFeatureState
from streams.worker.batching import MicroBatcher
from streams.worker.dead_letters import DeadLetters

logger = logging.getLogger(__name__)

#: Live states kept in memory (the table is the truth; this saves a decode per record).
DEFAULT_CACHE_LIMIT = 200_000


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
    ) -> None:
        self.table = table
        self.batcher = batcher
        self.dead_letters = dead_letters
        self.config = config
        self.cache_limit = cache_limit
        self.counts: Counter[str] = Counter()
        self.positions: dict[Any, int] = {}  # TP -> next offset to process
        self._states: dict[str, UserFeatureState] = {}

    def forget_states(self) -> None:
        """Drop the in-memory states (on a rebalance: another worker may own them now)."""
        self._states.clear()

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
        if result.outcome is Outcome.ACCEPTED:
            self.table[record.user_id] = state.to_dict()
        elif result.outcome is Outcome.LATE:
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
