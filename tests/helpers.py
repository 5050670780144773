"""Small builders shared by tests."""

from __future__ import annotations

from typing import Any

from streams.events import EventType, ListeningEvent

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make_event(number: int, *, user: str | None = None, ts: int | None = None, kind: str = "play") -> ListeningEvent:
    genre = ("pop", "rock", "jazz")[number % 3]
    return ListeningEvent(
        event_id=f"e-{number}",
        user_id=user or f"u-{number % 37}",
        ts=ts if ts is not None else T0_MS + number * 1000,
        type=EventType(kind),
        item_id=f"{genre}-{number % 11}",
        genre=genre,
        ms_played=30_000 if kind == "play" else 2_000,
    )


class RecordingProducer:
    """A stand-in for kafka-python's producer in unit tests: records what was sent, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, *, key: bytes, value: bytes) -> Any:
        self.sent.append((topic, key, value))
        future = type("Acknowledged", (), {})()
        future.add_callback = lambda fn: fn(None)
        future.add_errback = lambda fn: None
        return future

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...
