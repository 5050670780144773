"""The live driver against a tiny fake serving API and an in-memory publisher."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

from aiohttp import web

from experiments.assignment import assign
from infra.settings import Settings
from infra.simulation.driver import run_simulation
from infra.simulation.model import ModelParams
from infra.simulation.offline import load_demo_spec

SPEC = load_demo_spec()


class MemoryPublisher:
    def __init__(self) -> None:
        self.records: list = []
        self.flushed = 0

    def publish(self, record) -> None:
        self.records.append(record)

    def flush(self, timeout_s=None) -> None:
        self.flushed += 1

    def close(self, timeout_s=30.0) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _with_server(fail_every: int, body):
    calls = Counter()

    async def recommend(request: web.Request) -> web.Response:
        payload = await request.json()
        calls["n"] += 1
        if fail_every and calls["n"] % fail_every == 0:
            return web.json_response({"error": "boom"}, status=500)
        variant = assign(SPEC, payload["user_id"], at_ms=payload["ts"])
        arm = payload["candidates"][0] if variant == "treatment" else payload["candidates"][calls["n"] % 8]
        return web.json_response({"arm": arm, "decision_id": f"d{calls['n']}", "variant": variant,
                                  "experiment": SPEC.id if variant else None, "policy": "p", "propensity": 1.0,
                                  "exposed": {SPEC.id: variant} if variant else {}, "params": {"num_items": 3}})

    app = web.Application()
    app.router.add_post("/recommend", recommend)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await body(f"http://127.0.0.1:{port}"), calls
    finally:
        await runner.cleanup()


def _simulate(url: str, publisher: MemoryPublisher, users: int = 40):
    messages: list[str] = []
    return run_simulation(settings=Settings(), serve_url=url, users=users, seed=3, progress=messages.append,
                          publisher=publisher, params=ModelParams(), concurrency=8, retries=1, backoff_s=0.0,
                          spec=SPEC), messages


def test_drives_serving_publishes_in_event_time_order_and_counts_errors() -> None:
    publisher = MemoryPublisher()
    messages: list[str] = []

    async def body(url: str):
        run, said = _simulate(url, publisher)
        result = await run
        messages.extend(said)
        return result

    result, calls = asyncio.run(_with_server(17, body))
    assert result.recommendations > 0 and result.serving_errors.get("http_500", 0) > 0
    assert result.recommendations + result.serving_errors["http_500"] == calls["n"]
    assert result.events_published == len(publisher.records) > 0 and publisher.flushed == 1
    times = [r.ts for r in publisher.records]
    assert times == sorted(times)
    assert len({r.event_id for r in publisher.records}) == len(publisher.records)
    assert set(result.exposed) == {"control", "treatment"} and sum(result.exposed.values()) > 30
    assert result.truth["metrics"]["plays_7d"]["means"]["treatment"] > 0
    assert any(row["variant"] == "treatment" for row in result.learning_curve)
    assert any(m.startswith("day +8") for m in messages)


def test_survives_a_serving_api_that_always_fails() -> None:
    publisher = MemoryPublisher()

    async def body(url: str):
        return await _simulate(url, publisher, users=5)[0]

    result, calls = asyncio.run(_with_server(1, body))
    assert result.recommendations == 0 and result.serving_errors["gave_up"] > 0
    assert sum(result.exposed.values()) == 0 and len(publisher.records) > 0


def test_survives_no_serving_api_at_all() -> None:
    publisher = MemoryPublisher()
    result = asyncio.run(_simulate(f"http://127.0.0.1:{_free_port()}", publisher, users=3)[0])
    assert result.recommendations == 0 and "ClientConnectorError" in result.serving_errors
