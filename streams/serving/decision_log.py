"""The bounded, asynchronous log of decisions and exposures.

The request path only calls ``offer``, which never blocks on the broker: it appends
to an in-memory queue drained by one background thread that encodes each record and
hands it to the producer (``infra.kafka.librdkafka.LibrdkafkaProducer`` in ``tandem serve``),
whose ``send`` never blocks either: it raises ``BufferError`` when its own queue is
full, and the record is retried. At most ``max_pending`` records may be
unacknowledged at once (queued here, or handed to the producer and not yet
acknowledged); past that, ``offer`` refuses the record and counts it as overflowed,
and a warning is logged (at most every 10 s, with the count). Delivery failures are
counted and logged too. Nothing is dropped silently: every record is in exactly one
of ``acknowledged``, ``failed``, ``overflowed`` or ``pending``.

With a ``spool`` (``streams.serving.spool``; ``tandem serve`` has one), ``offer`` also
encodes the record and appends it to the local write-ahead spool, flushed to the OS, before
it returns, hence before the HTTP answer is sent: a SIGKILL then loses nothing answered. A
record leaves the spool when the broker acknowledges it (or its delivery definitely fails,
counted in ``failed``). ``start`` first sends again what a previous process left in the spool
(counted in ``replayed``); consumers dedupe on the record ids, so a record delivered twice is
counted once. The spool holds at most ``max_pending`` records the broker has not confirmed,
plus, until their segment is full and confirmed, records it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from streams.events import encode
from streams.serving.spool import Spool

logger = logging.getLogger(__name__)

WARN_EVERY_S = 10.0

#: While records keep coming, the drain thread looks for them this often instead of being
#: woken by each ``offer``: a wake-up per request was a fifth of the event loop's CPU at
#: 500 requests/s, and the producer lingers 100 ms for a batch anyway.
BATCH_WAIT_S = 0.005


class DecisionLog:
    """Hand records to Kafka off the request path; see the module docstring.

    ``producer_factory`` builds the producer inside the drain thread (retried every
    ``retry_s`` while it fails). The producer has ``send(topic, key=, value=)``, which
    returns an outcome taking ``add_callback`` and ``add_errback``, and ``close(timeout)``,
    which gives every record it holds an outcome. ``topics`` maps a short name
    (``decisions``, ``exposures``) to the topic, so counters read by name.
    """

    def __init__(
        self,
        *,
        producer_factory: Callable[[], Any],
        topics: dict[str, str],
        max_pending: int = 100_000,
        retry_s: float = 1.0,
        spool: Spool | None = None,
    ) -> None:
        self._factory = producer_factory
        self.topics = dict(topics)
        self.max_pending = max_pending
        self._retry_s = retry_s
        self.spool = spool
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._idle = False  # the drain thread waits for records
        self._pending = 0
        self.offered: Counter[str] = Counter()
        self.acknowledged: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.overflowed: Counter[str] = Counter()
        self.replayed: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_ack_monotonic: float | None = None
        self.last_failure_monotonic: float | None = None
        self._busy_since = time.monotonic()  # when the log last went from no pending record to one
        self.producer_ready = False
        self._deadline = float("inf")
        self._last_warning = {"overflow": -WARN_EVERY_S, "failed": -WARN_EVERY_S}
        self._thread = threading.Thread(target=self._run, name="serving-decision-log", daemon=True)

    # -- the request path --------------------------------------------------------------

    def offer(self, kind: str, record: Any) -> bool:
        """Queue ``record`` (keyed by its ``user_id``) for the ``kind`` topic; False if it overflowed.

        With a spool, the record is encoded and on the spool (flushed to the OS) when this returns.
        """
        return self.offer_all(((kind, record),))[0]

    def offer_all(self, records: Iterable[tuple[str, Any]]) -> list[bool]:
        """``offer`` each ``(kind, record)`` in order, under one hold of the lock and with one
        flush of the spool (one write to the OS for a request's decision and exposures)."""
        items: list[tuple[str, bytes, bytes | None, Any, ValueError | None]] = []
        for kind, record in records:
            key = _key(record).encode("utf-8")
            value: bytes | None = None
            invalid: ValueError | None = None
            if self.spool is not None:
                try:
                    value = encode(record)
                except ValueError as exc:  # an invalid record would never be accepted: count it
                    invalid = exc
            items.append((kind, key, value, record, invalid))
        accepted = []
        with self._cond:
            for kind, key, value, record, invalid in items:
                if invalid is not None:  # counted as offered, then as failed below
                    self.offered[kind] += 1
                    self._pending += 1
                    accepted.append(True)
                elif self._pending >= self.max_pending:
                    self.overflowed[kind] += 1
                    accepted.append(False)
                else:
                    self._enqueue(kind, key, value, record, flush=False)
                    self.offered[kind] += 1
                    accepted.append(True)
            if self.spool is not None:
                self.spool.flush()
        for kind, *_, invalid in items:
            if invalid is not None:
                self._done(kind, error=invalid)
        if not all(accepted):
            self._warn("overflow")
        return accepted

    def _enqueue(self, kind: str, key: bytes, value: bytes | None, record: Any, *, flush: bool = True) -> None:
        """Spool (when there is a spool) and queue one record; the caller holds the lock."""
        segment = (None if self.spool is None or value is None
                   else self.spool.append(kind, key, value, flush=flush))
        if self._pending == 0:
            self._busy_since = time.monotonic()
        self._pending += 1
        self._queue.append(_Queued(kind, key, value, record, segment))
        if self._idle:  # wake the drain thread only when it waits: one wake-up per batch
            self._cond.notify()

    def broker_error(self, text: str) -> None:
        """The producer's report of a client-wide error (records keep waiting; see ``healthy``)."""
        self.last_error = text

    def _warn(self, what: str) -> None:
        """Log a summary at most every ``WARN_EVERY_S`` per kind of loss, with the running totals."""
        now = time.monotonic()
        if now - self._last_warning[what] < WARN_EVERY_S:
            return
        self._last_warning[what] = now
        logger.error(
            "decision log: %s records overflowed (buffer limit %d unacknowledged), %s failed delivery; "
            "last broker error: %s", dict(self.overflowed), self.max_pending, dict(self.failed), self.last_error)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def queued(self) -> int:
        return len(self._queue)

    def healthy(self, *, stall_s: float = 5.0) -> bool:
        """The producer runs, the buffer has room, the last delivery did not fail, and records
        waiting for the broker have seen an acknowledgement within ``stall_s``."""
        now = time.monotonic()
        last_ack = self.last_ack_monotonic
        failing = self.last_failure_monotonic is not None and (
            last_ack is None or self.last_failure_monotonic > last_ack)
        stalled = self._pending > 0 and now - max(last_ack or 0.0, self._busy_since) > stall_s
        return self.producer_ready and self._pending < self.max_pending and not failing and not stalled

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> DecisionLog:
        """Queue again what a previous process left in the spool, then start the drain thread."""
        if self.spool is not None:
            with self._cond:
                for item in self.spool.recover():
                    self._enqueue(item.kind, item.key, item.value, None)
                    self.replayed[item.kind] += 1
                self.spool.discard_recovered()
        self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, wait up to ``timeout_s`` for acknowledgements, and report the rest."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 2.0)
        if self._pending:
            logger.error("decision log closed with %d records unsent or unacknowledged%s", self._pending,
                         "" if self.spool is None else f" (kept in the spool {self.spool.directory})")
        if self.spool is not None:
            with self._cond:
                self.spool.close()

    # -- the drain thread --------------------------------------------------------------

    def _run(self) -> None:
        producer = self._connect()
        busy = False
        while producer is not None:
            with self._cond:
                while not self._queue and not self._stopping:
                    if busy:  # records came lately: look again shortly rather than be woken for each
                        busy = False
                        self._cond.wait(BATCH_WAIT_S)
                        continue
                    self._idle = True
                    self._cond.wait(0.5)
                    self._idle = False
                busy = True
                if self._stopping and (not self._queue or time.monotonic() > self._deadline):
                    break
                batch = list(self._queue)  # everything queued, in one hold of the lock
                self._queue.clear()
            for index, item in enumerate(batch):
                if not self._send(producer, item):
                    with self._cond:  # the rest goes back to the front, in order, for a retry
                        self._queue.extendleft(reversed(batch[index:]))
                    time.sleep(min(self._retry_s, 0.2))
                    break
        if producer is not None:
            self._shutdown(producer)

    def _connect(self) -> Any:
        while True:
            try:
                producer = self._factory()
                self.producer_ready = True
                return producer
            except Exception as exc:  # noqa: BLE001 - keep trying while the broker is away
                self.last_error = f"cannot start the producer: {type(exc).__name__}: {exc}"
                logger.warning("decision log: %s", self.last_error)
            with self._cond:
                if self._stopping:
                    return None
                self._cond.wait(self._retry_s)

    def _send(self, producer: Any, item: _Queued) -> bool:
        """Hand one record to the producer; False if it should be retried (not accepted)."""
        kind, segment = item.kind, item.segment
        value = item.value
        if value is None:
            try:
                value = encode(item.record)
            except ValueError as exc:  # an invalid record would never be accepted: count it
                self._done(kind, error=exc)
                return True
        try:
            future = producer.send(self.topics[kind], key=item.key, value=value)
        except BufferError as exc:  # the producer's queue is full (the broker is slow or away)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        except Exception as exc:  # noqa: BLE001 - counted and logged, never lost silently
            self._done(kind, error=exc, segment=segment)
            return True
        future.add_callback(lambda _meta: self._done(kind, segment=segment))
        future.add_errback(lambda exc: self._done(kind, error=exc, segment=segment))
        return True

    def _done(self, kind: str, *, error: BaseException | None = None, segment: int | None = None) -> None:
        with self._cond:
            self._pending -= 1
            if segment is not None and self.spool is not None:
                self.spool.confirm(segment)
            if error is None:
                self.acknowledged[kind] += 1
                self.last_ack_monotonic = time.monotonic()
            else:
                self.failed[kind] += 1
                self.last_failure_monotonic = time.monotonic()
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"
            self._warn("failed")

    def _shutdown(self, producer: Any) -> None:
        try:
            producer.close(timeout=max(0.0, self._deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - what is left is reported by close()
            logger.error("decision log: closing the producer failed: %s: %s", type(exc).__name__, exc)


@dataclass(frozen=True, slots=True)
class _Queued:
    """A record waiting for the producer: encoded already when it is spooled (``segment``)."""

    kind: str
    key: bytes
    value: bytes | None
    record: Any
    segment: int | None


def _key(record: Any) -> str:
    """A record's key: its ``log_key`` if it has one, else its user (a dead letter: its source topic).

    ``log_key`` is looked up on the class first: on a pydantic model, a missing attribute goes
    through ``BaseModel.__getattr__`` and an exception, which cost as much as the rest of ``offer``."""
    log_key = getattr(record, "log_key", None) if hasattr(type(record), "log_key") or not isinstance(
        record, BaseModel) else None
    return str(log_key or getattr(record, "user_id", None) or record.source_topic)
