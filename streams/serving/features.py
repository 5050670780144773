"""The user's features for a request: read on the event loop, or coalesced in a thread.

``InlineFeatureReader`` reads on the event loop itself, for stores whose read is a
local lookup (``reads_in_process``: SQLite in WAL mode, ~0.2 ms per user here). Handing
such a read to a thread costs more than the read: under load the reading thread waits
for the GIL at each of SQLite's GIL releases (measured at 500 requests/s: 2.5–3 ms per
request through the thread, 0.4 ms inline).

``CoalescingFeatureReader`` is for stores behind a network (Redis), whose reads may
block for long: one blocking read at a time runs in a one-thread executor, for every
waiting user, so under load one call serves many requests. Nothing is cached: each
request gets the store's row as of a read that started after the request arrived. Each
request waits at most ``timeout_s``; past it, or when ``max_waiting`` users are already
waiting, it gets the defaults.

With either, a failed read serves the defaults; every fallback is counted by reason
(``timeout``, ``busy``, ``error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streams.serving.metrics import Histogram
from streams.serving.recommender import FeatureReader

logger = logging.getLogger(__name__)

_TIMED_OUT: dict[str, int | float] = {}


def _expire(future: asyncio.Future[dict[str, int | float]]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


#: At most this many users per read (larger batches cost more than they save in hand-offs).
MAX_BATCH = 64


class _FeatureReads:
    """What both readers count: fallbacks by reason, the wait for features, users per read."""

    def __init__(self, reader: FeatureReader) -> None:
        self.reader = reader
        self.fallbacks: Counter[str] = Counter()
        self.latency = Histogram()  # from the request's arrival to its features, seconds
        self.batch_sizes = Histogram((1, 2, 4, 8, 16, 32, 64))
        self._last_error_log = 0.0

    @property
    def defaults(self) -> dict[str, int | float]:
        return dict(self.reader.defaults)

    def _log_error(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 10.0:
            self._last_error_log = now
            logger.error("feature read failed (serving defaults): %s: %s; fallbacks so far %s",
                         type(error).__name__, error, dict(self.fallbacks))

    def close(self) -> None:
        return None


class InlineFeatureReader(_FeatureReads):
    """``await get(user_id)``: the user's features, read on the event loop; see the module doc."""

    async def get(self, user_id: str) -> dict[str, int | float]:
        began = time.perf_counter()
        try:
            features = self.reader.read([user_id])[user_id]
        except Exception as exc:  # noqa: BLE001 - served with the defaults, counted, logged every 10 s
            self.fallbacks["error"] += 1
            self._log_error(exc)
            return self.defaults
        self.batch_sizes.observe(1)
        self.latency.observe(time.perf_counter() - began)
        return features


class CoalescingFeatureReader(_FeatureReads):
    """``await get(user_id)``: the user's features, from a shared read; see the module doc."""

    def __init__(self, reader: FeatureReader, *, timeout_s: float, max_waiting: int = 1024) -> None:
        super().__init__(reader)
        self.timeout_s = timeout_s
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serving-features")
        self._waiting: dict[str, list[asyncio.Future[dict[str, int | float]]]] = {}
        self._reading = False
        self._n_waiting = 0

    async def get(self, user_id: str) -> dict[str, int | float]:
        if self._n_waiting >= self.max_waiting:
            self.fallbacks["busy"] += 1
            return self.defaults
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, int | float]] = loop.create_future()
        self._waiting.setdefault(user_id, []).append(future)
        self._n_waiting += 1
        if not self._reading:
            self._launch()
        timer = loop.call_later(self.timeout_s, _expire, future)
        try:
            features = await future
        except Exception:  # noqa: BLE001 - the read failed; logged once per 10 s by _resolve
            self.fallbacks["error"] += 1
            return self.defaults
        finally:
            timer.cancel()
        if features is _TIMED_OUT:
            self.fallbacks["timeout"] += 1
            return self.defaults
        self.latency.observe(time.perf_counter() - began)
        return features

    def _launch(self) -> None:
        users = list(self._waiting)[:MAX_BATCH]
        batch = {user: self._waiting.pop(user) for user in users}
        self._n_waiting -= sum(map(len, batch.values()))
        self._reading = True
        self.batch_sizes.observe(len(users))
        read = asyncio.get_running_loop().run_in_executor(self._executor, self.reader.read, users)
        read.add_done_callback(lambda outcome: self._resolve(batch, outcome))

    def _resolve(self, batch: dict[str, list[asyncio.Future[Any]]], outcome: asyncio.Future[Any]) -> None:
        self._reading = False
        error = outcome.exception()
        if error is not None:
            self._log_error(error)
        for user, futures in batch.items():
            for future in futures:
                if future.done():  # timed out
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(outcome.result()[user])
        if self._waiting:
            self._launch()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
