"""The console's HTTP adapter: routes over ``Console``, the bearer token, errors as JSON.

Every write (``POST``) checks ``Authorization: Bearer <token>`` before it reads anything:
without the right token it answers 401 and changes nothing (with no token configured every
write is refused). Lifecycle refusals are 409 with the reason, invalid bodies or specs 422
with the field paths, unknown experiments 404, and past ``max_in_flight`` requests at once
429 (``Retry-After: 1``). Blocking work (the statistics, the broker's acknowledgement) runs
off the event loop. ``GET /metrics`` (Prometheus text) counts every
response by route and status; like every read it needs no token, and it shows none.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from experiments.console import pages
from experiments.console.bodies import ApplyBody, DecideBody, StopBody, parse_body
from experiments.console.errors import BadBody
from experiments.console.metrics import RequestCounts, console_families
from experiments.console.openapi import document
from experiments.console.service import Console, spec_errors
from experiments.errors import InvalidSpec, TransitionRefused, UnknownExperiment
from experiments.ope.errors import GateRefused
from infra.metrics import CONTENT_TYPE, exposition, registry

logger = logging.getLogger(__name__)

CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
TOKEN: web.AppKey[SecretStr | None] = web.AppKey("token", SecretStr)  # type: ignore[arg-type]
COUNTS: web.AppKey[RequestCounts] = web.AppKey("counts", RequestCounts)
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)
MAX_BODY_BYTES = 256 * 1024
#: Requests answered at once (the statistics behind a page cost CPU); more are answered 429 at once.
DEFAULT_MAX_IN_FLIGHT = 8
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """The requests being answered, and how many may be."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max in flight: {limit} < 1")
        self.limit = limit
        self.count = 0


IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)


def _error(status: int, reason: str, fields: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if fields is not None:
        body["fields"] = fields
    return web.json_response(body, status=status)


def _authorized(request: web.Request) -> bool:
    token = request.app[TOKEN]
    given = request.headers.get("Authorization", "")
    if token is None or not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.get_secret_value().encode())


@web.middleware
async def _count(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every response (refusals and redirects too) by route and status."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        request.app[COUNTS].done(request.method, route, exc.status)
        raise
    request.app[COUNTS].done(request.method, route, response.status)
    return response


@web.middleware
async def _bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A flood of requests gets 429 (``Retry-After: 1``) past ``InFlight.limit`` answers at once,
    before any work: the console's own CPU and queue stay bounded, and what is answered stays fast.
    ``/metrics`` is always answered (it is how the flood is seen)."""
    bound = request.app[IN_FLIGHT]
    if request.path == "/metrics":
        return await handler(request)
    if bound.count >= bound.limit:
        response = _error(429, f"busy: {bound.limit} requests are being answered; retry later")
        response.headers["Retry-After"] = "1"
        return response
    bound.count += 1
    try:
        return await handler(request)
    finally:
        bound.count -= 1


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _authorized(request):
        return _error(401, "a write needs the header Authorization: Bearer <TANDEM_CONSOLE_TOKEN>")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except UnknownExperiment as exc:
        return _error(404, str(exc))
    except (TransitionRefused, GateRefused) as exc:
        return _error(409, str(exc))
    except InvalidSpec as exc:
        return _error(422, str(exc), spec_errors(exc))
    except BadBody as exc:
        return _error(422, str(exc), [{"field": f, "message": m} for f, m in exc.problems])
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(reason=f"the body is not JSON: {exc}") from None


async def _blocking(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def list_experiments(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.json_response({"experiments": await _blocking(console.list_experiments)})


async def get_experiment(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.json_response(await _blocking(partial(console.detail, request.match_info["id"])))


async def apply(request: web.Request) -> web.Response:
    body = parse_body(ApplyBody, await _json_body(request))
    console = request.app[CONSOLE]
    spec = await _blocking(partial(console.apply, body.spec, who=body.who, why=body.why, no_gate=body.no_gate))
    return web.json_response(await _blocking(partial(console.detail, spec.id)))


async def stop(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    experiment = request.match_info["id"]
    console.state.spec(experiment)  # 404 before the body is judged
    body = parse_body(StopBody, await _json_body(request))
    await _blocking(partial(console.stop, experiment, who=body.who, why=body.why))
    return web.json_response(await _blocking(partial(console.detail, experiment)))


async def decide(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    experiment = request.match_info["id"]
    console.state.spec(experiment)
    body = parse_body(DecideBody, await _json_body(request))
    record = await _blocking(partial(console.decide, experiment, who=body.who, note=body.note, force=body.force))
    return web.json_response({"decision": record.to_dict()})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


async def list_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.Response(text=pages.list_page(await _blocking(console.list_experiments)), content_type="text/html")


async def detail_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    try:
        detail = await _blocking(partial(console.detail, request.match_info["id"]))
    except UnknownExperiment as exc:
        return web.Response(text=f"<!doctype html><title>not found</title><p>{exc}</p>", status=404,
                            content_type="text/html")
    return web.Response(text=pages.detail_page(detail), content_type="text/html")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=exposition(request.app[METRICS]), headers={"Content-Type": CONTENT_TYPE})


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/experiments")


def build_app(console: Console, *, token: SecretStr | None,
              max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_count, _bounded, _errors])
    app[IN_FLIGHT] = InFlight(max_in_flight)
    app[CONSOLE] = console
    app[TOKEN] = token if token is not None and token.get_secret_value() else None
    counts = app[COUNTS] = RequestCounts()
    app[METRICS] = registry(lambda: console_families(
        counts, (spec.status for spec in console.state.specs()), len(console.automatic_stops)))
    app.router.add_get("/", home)
    app.router.add_get("/experiments", list_page)
    app.router.add_get("/experiments/{id}", detail_page)
    app.router.add_get("/api/experiments", list_experiments)
    app.router.add_post("/api/experiments", apply)
    app.router.add_get("/api/experiments/{id}", get_experiment)
    app.router.add_post("/api/experiments/{id}/stop", stop)
    app.router.add_post("/api/experiments/{id}/decide", decide)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    return app
