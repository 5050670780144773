"""Micro-batches of feature rows: flush every N records or T ms, whichever comes first.

The batcher knows nothing of Faust or Feast. The adapter hands it, per record, the user's
live state (or none, for a record that changed no user), an opaque *token* and the record's
publish time. A flush seals the batch on the event loop (one ``feature_row()`` per touched
user, so the rows are a consistent snapshot), runs the blocking ``write`` in a thread, and
only after it returns calls ``ack(token)`` for every record of the batch and records each
record's freshness. So a record is acknowledged (and its offset becomes committable) only
once its effect is readable in the online store.

One flush runs at a time, in the background; records keep arriving meanwhile, and the next
batch is sealed when it ends if its first record has waited T ms by then. So T is short (the
worker's default is 10 ms): under load a batch is what arrived during the previous write, its
size follows the writer's pace, and on a quiet stream a record waits ~T ms, not a fixed 100
(which was half of the features' freshness p50). A timer set when a batch's first record
arrives seals it at T ms. When twice ``max_records`` are waiting, ``add`` waits for the running
flush (back-pressure). A failed
write is retried with a growing pause; its records are not acknowledged until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.worker.features.freshness import FreshnessTracker

logger = logging.getLogger(__name__)

MAX_RETRY_PAUSE_S = 5.0


class RowSource(Protocol):
    @property
    def user_id(self) -> str: ...

    @property
    def newest_ts(self) -> int | None: ...

    def feature_row(self) -> dict[str, Any]: ...


@dataclass
class FlushStats:
    flushes: int = 0
    rows_written: int = 0
    records_flushed: int = 0
    write_errors: int = 0
    last_flush_ms: float | None = None  # duration of the last successful write
    last_error: str | None = None


@dataclass
class _Pending:
    states: dict[str, RowSource] = field(default_factory=dict)
    tokens: list[Any] = field(default_factory=list)
    publish_ms: list[float] = field(default_factory=list)
    arrived_ms: list[float] = field(default_factory=list)  # wall clock when ``add`` got the record
    since: float | None = None  # monotonic time of the first record waiting

    def __len__(self) -> int:
        return len(self.tokens)


class MicroBatcher:
    """See the module docstring. ``write`` blocks (it runs in a thread); ``ack`` must not."""

    def __init__(
        self,
        *,
        write: Callable[[Sequence[Mapping[str, Any]]], object],
        ack: Callable[[Any], object],
        max_records: int = 1000,
        max_delay_ms: float = 10.0,
        freshness: FreshnessTracker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_records < 1 or max_delay_ms <= 0:
            raise ValueError("max_records must be >= 1 and max_delay_ms > 0")
        self._write = write
        self._ack = ack
        self.max_records = max_records
        self.max_delay_s = max_delay_ms / 1000.0
        self.freshness = freshness or FreshnessTracker()
        #: Where freshness goes, per record (ms): publish -> ``add`` (producer, broker, fetch,
        #: Faust, the agent), ``add`` -> sealed (waiting in the batch), sealed -> the write
        #: began in its thread, and the write itself (the writer's IPC and Feast).
        #: Over the same newest 20k records as ``freshness``; summarized at most every 2 s.
        self.stages = {name: FreshnessTracker(histogram=False)
                       for name in ("to_agent", "in_batch", "to_write", "write")}
        self._stage_summary: tuple[float, dict[str, float | None]] = (-1e9, {})
        self.stats = FlushStats()
        self._clock = clock
        self._pending = _Pending()
        self._running: asyncio.Task[None] | None = None
        self._in_flight = 0

    @property
    def waiting(self) -> int:
        """Records not yet acknowledged: waiting for a flush or in the running one."""
        return len(self._pending) + (self._in_flight if self._running else 0)

    def due(self) -> bool:
        pending = self._pending
        if not pending.tokens:
            return False
        return len(pending) >= self.max_records or (
            pending.since is not None and time.monotonic() - pending.since >= self.max_delay_s
        )

    async def add(self, state: RowSource | None, token: Any, publish_ms: float) -> None:
        """Queue one record; ``state`` is the user's live state when the record concerns one."""
        pending = self._pending
        if pending.since is None:
            pending.since = time.monotonic()
            asyncio.get_running_loop().call_later(self.max_delay_s, self.kick)  # T ms from now
        if state is not None and state.newest_ts is not None:
            pending.states[state.user_id] = state
        pending.tokens.append(token)
        pending.publish_ms.append(publish_ms)
        pending.arrived_ms.append(self._clock() * 1000.0)
        if self.due():
            self.kick()
        while len(self._pending) >= 2 * self.max_records and self._running is not None:
            await asyncio.shield(self._running)  # back-pressure: the stream waits for the store
            self.kick()

    def kick(self) -> None:
        """Seal the batch now and write it in the background, unless a flush runs or none is due."""
        if self._running is None and self.due():
            self._start()

    def _start(self) -> None:
        batch, self._pending = self._pending, _Pending()
        rows = [state.feature_row() for state in batch.states.values()]  # the snapshot, on the loop
        self._in_flight = len(batch)
        self._running = asyncio.ensure_future(self._flush(batch, rows, self._clock() * 1000.0))

    def _add_stages(self, batch: _Pending, sealed_ms: float, write_began_ms: float, done_ms: float) -> None:
        n = len(batch)
        stages = self.stages
        stages["to_agent"].add_many([a - p for a, p in zip(batch.arrived_ms, batch.publish_ms, strict=True)])
        stages["in_batch"].add_many([sealed_ms - a for a in batch.arrived_ms])
        stages["to_write"].add_many([write_began_ms - sealed_ms] * n)
        stages["write"].add_many([done_ms - write_began_ms] * n)

    def stage_summary(self) -> dict[str, float | None]:
        """p50 and p99 of each stage (``stages``), as ``stage_<name>_p50_ms`` and ``..._p99_ms``;
        recomputed at most every 2 s (four sorts of 20k samples per status would cost ~1% CPU)."""
        at, cached = self._stage_summary
        if time.monotonic() - at < 2.0:
            return cached
        out: dict[str, float | None] = {}
        for name, tracker in self.stages.items():
            p50, p99 = tracker.percentiles(50, 99)
            out[f"stage_{name}_p50_ms"], out[f"stage_{name}_p99_ms"] = p50, p99
        self._stage_summary = (time.monotonic(), out)
        return out

    async def drain(self) -> None:
        """Flush everything waiting now, regardless of size or age (e.g. at shutdown)."""
        while self._running is not None or self._pending.tokens:
            if self._running is None:
                self._start()
            assert self._running is not None
            await asyncio.shield(self._running)

    async def tick_forever(self) -> None:
        """A safety net under the T-ms timers of ``add``: check for an old enough batch every
        T ms (at least every 50 ms)."""
        while True:
            await asyncio.sleep(max(self.max_delay_s, 0.05))
            self.kick()

    def _timed_write(self, rows: list[dict[str, Any]], began: list[float]) -> None:
        began.append(self._clock() * 1000.0)
        self._write(rows)

    async def _flush(self, batch: _Pending, rows: list[dict[str, Any]], sealed_ms: float) -> None:
        try:
            pause = 0.05
            write_began: list[float] = []
            while True:
                began = time.perf_counter()
                try:
                    if rows:
                        await asyncio.to_thread(self._timed_write, rows, write_began)
                    break
                except Exception as exc:  # the store may be briefly unavailable: retry, never ack
                    self.stats.write_errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    logger.exception("feature write of %d rows failed; retrying in %.2f s", len(rows), pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MAX_RETRY_PAUSE_S)
            done_ms = self._clock() * 1000.0
            self.stats.last_flush_ms = (time.perf_counter() - began) * 1000.0
            self.stats.flushes += 1
            self.stats.rows_written += len(rows)
            self.stats.records_flushed += len(batch)
            self.freshness.add_many(done_ms - published for published in batch.publish_ms)
            self._add_stages(batch, sealed_ms, write_began[-1] if write_began else done_ms, done_ms)
            for token in batch.tokens:
                try:
                    self._ack(token)
                except Exception:  # a revoked partition's event: its offset is replayed anyway
                    logger.debug("ack failed", exc_info=True)
        finally:
            self._in_flight = 0
            self._running = None
        self.kick()
