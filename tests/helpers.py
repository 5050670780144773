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


class DefaultFeatures:
    """A feature reader that knows nobody: every user gets the default features."""

    def __init__(self) -> None:
        from streams.features import default_features

        self.defaults = default_features()

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        return {user: dict(self.defaults) for user in user_ids}


async def serve_answers(settings: Any, requests: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    """A fresh serving service on ``settings``' broker answers ``(user, ts)`` requests over HTTP, in
    order; it returns once its log has delivered every record (each user's last answer is kept)."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from streams.serving import ServingConfig, build_app, build_service

    service = build_service(settings, features=DefaultFeatures(), config=ServingConfig())
    service.start()
    answers = {}
    try:
        async with TestClient(TestServer(build_app(service))) as client:
            for user, ts in requests:
                response = await client.post("/recommend", json={"user_id": user, "ts": ts})
                assert response.status == 200, await response.text()
                answers[user] = await response.json()
            for _ in range(600):
                if service.log.pending == 0:
                    break
                await asyncio.sleep(0.1)
            assert service.log.pending == 0 and not service.log.failed
    finally:
        await asyncio.to_thread(service.close, 5.0)
    return answers
