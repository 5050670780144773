"""A confluent-kafka (librdkafka) producer behind the small interface the serving log uses.

Why a second client: in the serving process kafka-python's ``send`` and its sender thread
are Python holding the GIL, ~0.4 ms per request, taken from the event loop in bursts. At
500 requests/s (``python -m bench.bench_serving``, features read on the loop) the p99 was
18–30 ms through kafka-python and 4–8 ms through librdkafka, which queues, batches and
talks to the broker in native threads; a ``produce`` costs microseconds. Everything else
in tandem stays on kafka-python and Faust.

``send`` never blocks: it raises ``BufferError`` when librdkafka's queue is full. Each
record's outcome arrives once on the poll thread, through the callbacks added to what
``send`` returned. ``close`` waits for outstanding records up to its timeout, then purges
the rest, which reach their errbacks: nothing is left without an outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from infra.errors import DeliveryError

logger = logging.getLogger(__name__)

POLL_S = 0.1


class Delivery:
    """One record's outcome; callbacks added after it is known run at once (as kafka-python's futures)."""

    __slots__ = ("_lock", "_settled", "_error", "_on_ack", "_on_error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = False
        self._error: DeliveryError | None = None
        self._on_ack: list[Callable[[Any], Any]] = []
        self._on_error: list[Callable[[BaseException], Any]] = []

    def add_callback(self, fn: Callable[[Any], Any]) -> Delivery:
        with self._lock:
            if not self._settled:
                self._on_ack.append(fn)
                return self
        if self._error is None:
            fn(None)
        return self

    def add_errback(self, fn: Callable[[BaseException], Any]) -> Delivery:
        with self._lock:
            if not self._settled:
                self._on_error.append(fn)
                return self
        if self._error is not None:
            fn(self._error)
        return self

    def settle(self, error: Any, _message: Any) -> None:
        """librdkafka's ``on_delivery``: ``error`` is a ``KafkaError`` or None."""
        with self._lock:
            self._settled = True
            if error is not None:
                self._error = DeliveryError(str(error))
            on_ack, on_error, self._on_ack, self._on_error = self._on_ack, self._on_error, [], []
        if self._error is None:
            for ack in on_ack:
                ack(None)
        else:
            for fail in on_error:
                fail(self._error)


class LibrdkafkaProducer:
    """``send`` / ``flush`` / ``close`` over ``confluent_kafka.Producer``; see the module doc."""

    def __init__(self, config: dict[str, Any], *, on_error: Callable[[str], Any] | None = None) -> None:
        """``on_error`` hears librdkafka's client-wide errors (a broker unreachable, say) as text."""
        import confluent_kafka

        self._producer = confluent_kafka.Producer({**config, "logger": logger, "error_cb": self._on_error})
        self._report_error = on_error
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="librdkafka-poll", daemon=True)
        self._poller.start()

    def _on_error(self, error: Any) -> None:
        if self._report_error is not None:
            self._report_error(str(error))

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(POLL_S)

    def send(self, topic: str, *, key: bytes | None, value: bytes) -> Delivery:
        delivery = Delivery()
        self._producer.produce(topic, value=value, key=key, on_delivery=delivery.settle)
        return delivery

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds for every record's outcome; the number still outstanding."""
        return int(self._producer.flush(-1 if timeout is None else timeout))

    def close(self, timeout: float | None = None) -> None:
        left = self.flush(timeout)
        self._stopping.set()
        self._poller.join()
        if left:
            logger.error("%d records unacknowledged at close: purged, each reported as failed", left)
            self._producer.purge()
            self._producer.flush(0)
