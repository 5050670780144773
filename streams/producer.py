"""Publishing tandem records keyed by user_id, for producers and for tandem itself.

Records are keyed by ``user_id`` so one user's events stay in order on one
partition. Delivery is acknowledged by all in-sync replicas; a failure is never
swallowed: it is counted, kept, and raised by the next ``flush()`` or ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from infra.kafka.producer import DeliveryStats, KafkaPublisher
from streams.errors import InvalidRecord
from streams.events import decode_event, encode

__all__ = ["DeliveryStats", "EventPublisher", "PublishReport", "parse_lines", "publish_lines"]


class KeyedRecord(Protocol):
    @property
    def user_id(self) -> str: ...

    def model_dump_json(self, **kwargs: Any) -> str: ...


class EventPublisher(KafkaPublisher):
    """Publish records keyed by user_id (``config``: ``infra.kafka.config.producer_config``)."""

    def publish(self, record: KeyedRecord, *, topic: str | None = None) -> None:
        self.publish_bytes(record.user_id.encode("utf-8"), encode(record), topic=topic)  # type: ignore[arg-type]

    def publish_many(self, records: Iterable[KeyedRecord]) -> int:
        count = 0
        for record in records:
            self.publish(record)
            count += 1
        return count


@dataclass
class PublishReport:
    accepted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, object]]:
    """Yield ``(line_number, event_or_error_message)`` for each non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, decode_event(line.rstrip("\n"))
        except InvalidRecord as exc:
            yield number, str(exc)


def publish_lines(publisher: EventPublisher, lines: Iterable[str]) -> PublishReport:
    """Publish valid JSON lines as listening events; invalid ones are reported, not sent."""
    report = PublishReport()
    for number, outcome in parse_lines(lines):
        if isinstance(outcome, str):
            report.rejected.append((number, outcome))
        else:
            publisher.publish(outcome)  # type: ignore[arg-type]
            report.accepted += 1
    publisher.flush()
    return report
