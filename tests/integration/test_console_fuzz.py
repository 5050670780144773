"""A property-based HTTP fuzz of the console from its own OpenAPI document, against the real broker.

Bodies are drawn from the document's request schemas (``from_schema`` below, for the flat
JSON schemas pydantic writes for the bodies) and from arbitrary
JSON and bytes; paths from known and random ids; the token is missing, wrong or right. Whatever
is sent: never a 5xx, and every write without the right token is 401 and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from experiments.console import build_app, document, open_console
from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from infra.kafka.broker import free_port
from infra.kafka.topics import apply_topics
from infra.settings import Settings
from tests.helpers import T0_MS

TOKEN = "fuzz-token"
DOC = document()
SCHEMAS = DOC["components"]["schemas"]
SPEC = load_spec(DEMO_SPEC_PATH)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a body schema: each property present or not, valid or not, sometimes an unknown one."""
    kind = schema.get("type")
    if kind == "string":
        valid = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 50), 50))
        return valid | st.text(min_size=0, max_size=schema.get("maxLength", 50) + 2)
    if kind == "boolean":
        return st.booleans()
    if kind == "object" and "properties" in schema:
        fields = {name: st.one_of(from_schema(sub), json_values) for name, sub in schema["properties"].items()}
        return st.fixed_dictionaries({}, optional=fields) | st.fixed_dictionaries(
            {}, optional={**fields, "unknown": json_values})
    return json_values


@pytest.fixture(scope="module")
def console_url(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from infra.settings import load_settings

    settings: Settings = load_settings({}, bootstrap_servers=broker.bootstrap, topic_prefix="fuzz.",
                                       state_dir=tmp_path_factory.mktemp("fuzz"))
    apply_topics(settings)
    for name in ("fuzz-a", "fuzz-b"):
        publish_spec(settings, apply_spec(None, SPEC.model_copy(update={"id": name}), who="fuzz", at=T0_MS))
    with open_console(settings, monitor=False) as running:
        port = free_port()
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner = web.AppRunner(build_app(running.console, token=SecretStr(TOKEN)), access_log=None,
                               handle_signals=False)

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert started.wait(30)
        try:
            yield f"http://127.0.0.1:{port}", running.console
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)


def send(url: str, method: str, data: bytes | None, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our own local server
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from(["fuzz-a", "fuzz-b", "nope"]) | st.text(min_size=1, max_size=30)
valid_specs = st.builds(lambda name: {"spec": {**json.loads(spec_to_json(SPEC)), "id": name}},
                        st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z"))
bodies = {
    "apply": from_schema(SCHEMAS["ApplyBody"]) | valid_specs | json_values,
    "stop": from_schema(SCHEMAS["StopBody"]) | json_values,
    "decide": from_schema(SCHEMAS["DecideBody"]) | json_values,
}
tokens = st.sampled_from([None, "Bearer wrong", f"Bearer {TOKEN}", TOKEN, "Basic x"])


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, str, bytes | None, str | None]:
    operation = draw(st.sampled_from(["list", "get", "openapi", "apply", "stop", "decide", "page"]))
    experiment = urllib.parse.quote(draw(ids), safe="")
    if operation in ("list", "get", "openapi", "page"):
        path = {"list": "/api/experiments", "get": f"/api/experiments/{experiment}", "openapi": "/openapi.json",
                "page": f"/experiments/{experiment}"}[operation]
        return "GET", path, None, draw(tokens)
    path = "/api/experiments" if operation == "apply" else f"/api/experiments/{experiment}/{operation}"
    raw = draw(st.integers(0, 9)) == 0
    body = draw(st.binary(max_size=40)) if raw else json.dumps(draw(bodies[operation])).encode()
    return "POST", path, body, draw(tokens)


def test_no_5xx_and_every_write_without_the_token_is_401(console_url: tuple[str, Any]) -> None:
    base, console = console_url
    seen: Counter[int] = Counter()

    @hypothesis_settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
    @given(call=calls())
    def fuzz(call: tuple[str, str, bytes | None, str | None]) -> None:
        method, path, body, token = call
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = token
        before = {spec.id: len(spec.history) for spec in console.state.specs()}
        decisions = sum(len(console.state.decisions(e)) for e in before)
        status = send(base + path, method, body, headers)
        seen[status] += 1
        assert status < 500, (method, path, body, token, status)
        if method == "POST" and token != f"Bearer {TOKEN}":
            assert status == 401, (method, path, body, token, status)
            assert {spec.id: len(spec.history) for spec in console.state.specs()} == before
            assert sum(len(console.state.decisions(e)) for e in before) == decisions

    fuzz()
    # The fuzz got past the token, the ids and the validation, not only to the first refusal.
    assert {200, 401, 404, 422} <= set(seen), seen
