"""The console's HTTP layer in process: token, status codes, field paths, pages, OpenAPI."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from experiments.console import build_app
from experiments.console.app import IN_FLIGHT
from tests.unit.experiments.console.builders import console_with, spec_body

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def run(check: Callable[[TestClient, Any], Awaitable[None]], *, token: str | None = TOKEN, days: int = 3) -> None:
    console, writer = console_with(days=days)

    async def main() -> None:
        app = build_app(console, token=SecretStr(token) if token is not None else None)
        async with TestClient(TestServer(app)) as client:
            await check(client, writer)

    asyncio.run(main())


def test_writes_without_the_token_are_401_and_change_nothing() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for path, body in (("/api/experiments/guarded/stop", {}), ("/api/experiments/guarded/decide",
                                                                        {"force": True}),
                               ("/api/experiments", {"spec": spec_body(id="new")}), ("/api/experiments/x/stop", {})):
                response = await client.post(path, json=body, headers=headers)
                assert response.status == 401, (path, headers)
        assert len(writer.specs) == 1 and writer.decisions == []
        assert (await (await client.get("/api/experiments/guarded")).json())["status"] == "running"

    run(check)


def test_with_no_token_configured_every_write_is_refused() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        response = await client.post("/api/experiments/guarded/stop", json={}, headers={"Authorization": "Bearer "})
        assert response.status == 401 and len(writer.specs) == 1

    run(check, token=None)


def test_unknown_experiments_are_404_and_refusals_are_409_with_the_reason() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        assert (await client.post("/api/experiments/nope/stop", json={}, headers=AUTH)).status == 404
        assert (await client.get("/api/experiments/nope")).status == 404
        assert (await client.get("/experiments/nope")).status == 404
        refused = await client.post("/api/experiments/guarded/decide", json={}, headers=AUTH)
        assert refused.status == 409
        assert "running; stop it first or decide with force" in (await refused.json())["error"]
        changed = spec_body(variants=[{"name": "control", "weight": 0.6, "policy": "popularity"},
                                      {"name": "treatment", "weight": 0.4, "policy": "linucb"}])
        refused = await client.post("/api/experiments", json={"spec": changed}, headers=AUTH)
        assert refused.status == 409 and "variants" in (await refused.json())["error"]
        assert len(writer.specs) == 1

    run(check)


def test_invalid_specs_and_bodies_are_422_with_the_field_paths() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        bad = spec_body(id="new")
        bad["metrics"][0]["window"] = {"length": "0d"}
        response = await client.post("/api/experiments", json={"spec": bad}, headers=AUTH)
        body = await response.json()
        assert response.status == 422 and body["fields"][0]["field"] == "metrics[0].window.length"
        response = await client.post("/api/experiments/guarded/decide", json={"force": "yes"}, headers=AUTH)
        assert response.status == 422 and (await response.json())["fields"][0]["field"] == "force"
        response = await client.post("/api/experiments/guarded/stop", data=b"{not json", headers=AUTH)
        assert response.status == 400
        response = await client.post("/api/experiments/guarded/stop", json=[1], headers=AUTH)
        assert response.status == 422
        assert len(writer.specs) == 1

    run(check)


def test_apply_stop_and_decide_with_the_token() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        ungated = await client.post("/api/experiments", json={"spec": spec_body(id="new"), "who": "ana"},
                                    headers=AUTH)
        assert ungated.status == 409 and "evaluation gate" in (await ungated.json())["error"]
        created = await client.post("/api/experiments", json={"spec": spec_body(id="new"), "who": "ana",
                                                               "no_gate": True}, headers=AUTH)
        assert created.status == 200 and (await created.json())["version"] == 1
        assert writer.specs[-1].evaluation.gate == "skipped" and writer.specs[-1].evaluation.who == "ana"
        stopped = await client.post("/api/experiments/guarded/stop", json={"why": "enough", "who": "bo"},
                                    headers=AUTH)
        assert stopped.status == 200 and (await stopped.json())["status"] == "stopped"
        decided = await client.post("/api/experiments/guarded/decide", json={"note": "keep control"},
                                    headers=AUTH)
        record = (await decided.json())["decision"]
        assert decided.status == 200 and record["spec_version"] == 3 and record["note"] == "keep control"
        listed = (await (await client.get("/api/experiments")).json())["experiments"]
        assert {(e["id"], e["status"]) for e in listed} == {("guarded", "decided"), ("new", "running")}

    run(check)


def test_pages_render_the_table_the_chart_the_health_and_the_history() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        listing = await (await client.get("/experiments")).text()
        assert 'href="/experiments/guarded"' in listing
        page = await (await client.get("/experiments/guarded")).text()
        for anchor in ("id=metrics", "id=lift", "id=health", "id=history", "id=decision", "<svg"):
            assert anchor in page
        assert page.count("class=point") >= 3 * 2  # 3 days, at least two metrics' charts

    run(check, days=3)


def test_the_openapi_document_lists_every_route_and_body() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        doc = await (await client.get("/openapi.json")).json()
        assert set(doc["paths"]) == {"/api/experiments", "/api/experiments/{id}", "/api/experiments/{id}/stop",
                                     "/api/experiments/{id}/decide", "/openapi.json"}
        assert {"ApplyBody", "StopBody", "DecideBody", "Error"} <= set(doc["components"]["schemas"])

    run(check)


def test_metrics_need_no_token_show_none_and_count_the_refused_writes() -> None:
    async def check(client: TestClient, writer: Any) -> None:
        assert (await client.post("/api/experiments/guarded/stop", json={})).status == 401
        assert (await client.post("/api/experiments/nope/stop", json={}, headers=AUTH)).status == 404
        assert (await client.get("/api/experiments")).status == 200
        response = await client.get("/metrics")
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
        assert TOKEN not in text
        assert 'tandem_console_requests_total{route="/api/experiments",status="200"} 1.0' in text
        assert 'tandem_console_requests_total{route="/api/experiments/{id}/stop",status="401"} 1.0' in text
        assert 'tandem_console_writes_refused_total{status="401"} 1.0' in text
        assert 'tandem_console_writes_refused_total{status="404"} 1.0' in text
        assert 'tandem_console_experiments{status="running"} 1.0' in text
        assert "tandem_console_automatic_stops_total 0.0" in text

    run(check)


def test_past_max_in_flight_requests_are_429_at_once_and_metrics_still_answer() -> None:
    """A flood of reads must not queue work in the console (blast radius, docs/operations.md)."""
    console, _ = console_with(days=3)
    release = threading.Event()
    listed = console.list_experiments

    def slow_list() -> list[dict[str, Any]]:
        release.wait(30)
        return listed()

    console.list_experiments = slow_list  # type: ignore[method-assign]

    async def main() -> None:
        app = build_app(console, token=None, max_in_flight=2)
        async with TestClient(TestServer(app)) as client:
            held = [asyncio.create_task(client.get("/api/experiments")) for _ in range(2)]
            while app[IN_FLIGHT].count < 2:
                await asyncio.sleep(0.01)
            refused = await client.get("/api/experiments/guarded")
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"
            assert "busy" in (await refused.json())["error"]
            metrics = await client.get("/metrics")
            assert metrics.status == 200
            assert 'route="/api/experiments/{id}",status="429"} 1.0' in await metrics.text()
            release.set()
            assert [response.status for response in await asyncio.gather(*held)] == [200, 200]
            assert (await client.get("/api/experiments/guarded")).status == 200

    asyncio.run(main())
