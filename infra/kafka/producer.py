"""A kafka-python producer that never swallows a delivery failure.

Every send is counted; failures are kept and raised by the next ``flush()`` or
``close()``. At most ``max_pending`` records wait for acknowledgement, so memory
stays bounded whatever the broker's speed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from infra.errors import DeliveryError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 50_000


@dataclass
class DeliveryStats:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class KafkaPublisher:
    """Publish keyed bytes with kafka-python; ``flush()`` raises if any delivery failed.

    ``config`` is a kafka-python producer configuration, usually
    ``infra.kafka.config.producer_config(settings)``. At most ``max_pending``
    records wait for acknowledgement; past that, ``publish`` waits for the
    broker, so memory stays bounded whatever the broker's speed.
    """

    def __init__(self, *, config: dict[str, Any], topic: str, max_pending: int = DEFAULT_MAX_PENDING):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.topic = topic
        self.max_pending = max_pending
        self.stats = DeliveryStats()
        self._lock = threading.Lock()
        self._reported = 0
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise DeliveryError(f"cannot connect to {config.get('bootstrap_servers')}: {exc}") from exc

    @property
    def pending(self) -> int:
        with self._lock:
            return self.stats.sent - self.stats.acknowledged - self.stats.failed

    def publish_bytes(self, key: bytes | None, value: bytes, *, topic: str | None = None) -> None:
        from kafka.errors import KafkaError

        if self.pending >= self.max_pending:
            self._producer.flush()
        try:
            future = self._producer.send(topic or self.topic, key=key, value=value)
        except KafkaError as exc:
            self._failed(exc)
            raise DeliveryError(f"could not hand a record to the producer: {exc}") from exc
        with self._lock:
            self.stats.sent += 1
        future.add_callback(self._acknowledged)
        future.add_errback(self._failed)

    def _acknowledged(self, _metadata: object) -> None:
        with self._lock:
            self.stats.acknowledged += 1

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self.stats.failed += 1
            if len(self.stats.errors) < 100:
                self.stats.errors.append(f"{type(error).__name__}: {error}")
        logger.error("delivery to %s failed: %s", self.topic, error)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every record sent so far; raise ``DeliveryError`` on new failures."""
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError as exc:
            raise DeliveryError(f"{self.pending} records unacknowledged after {timeout_s} s") from exc
        with self._lock:
            new_failures = self.stats.failed - self._reported
            self._reported = self.stats.failed
            errors = self.stats.errors[-min(new_failures, 5) :] if new_failures else []
        if new_failures:
            raise DeliveryError(f"{new_failures} records were not delivered: {'; '.join(errors)}")

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush and close; undelivered records raise ``DeliveryError`` after the producer is closed."""

        try:
            self.flush(timeout_s)
        finally:
            # A failed flush was raised above; closing must not hide it behind a second timeout.
            close_producer(self._producer, timeout_s=timeout_s if self.pending == 0 else 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def close_producer(producer: Any, *, timeout_s: float | None) -> None:
    """Close a kafka-python producer for sure, its sender thread included.

    kafka-python 3.0 flushes inside ``close()`` and raises when that times out,
    before it force-closes its sender thread; abort the unsent batches (their
    errbacks count them as failed) and close again.
    """
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaError as exc:
        logger.warning("producer close: %s; aborting unsent batches", exc)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(2.0)
    with contextlib.suppress(KafkaError):
        producer.close(timeout=0)
