"""Scenario 4, HTTP fuzz: schemathesis requests from the OpenAPI documents of the serving API and
the console, against both running as their own processes: 0 responses 5xx, 0 crashes.

The console serves its document (``GET /openapi.json``); serving has three routes and no document
of its own, so ``serving_document`` writes one from the request model serving validates with
(``RecommendRequest``). Each operation is fuzzed with valid bodies (schemathesis' positive mode)
and invalid ones (negative mode); the console's writes are sent with the right token, a wrong one
and none. After the fuzz both processes must still be running and answering.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATHS, load_spec
from infra.chaos.stack import ChaosStack, chaos_stack, http_json, wait_until
from infra.kafka.broker import free_port

logger = logging.getLogger(__name__)

SCENARIO = "http_fuzz"
#: Examples per operation and generation mode.
EXAMPLES = {True: 25, False: 150}


def serving_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document of serving's routes, its request body from the model it validates with."""
    from streams.serving.request import RecommendRequest

    body = RecommendRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    ok = {"description": "the answer", "content": {"application/json": {"schema": {"type": "object"}}}}
    error = {"description": "invalid body: the error names the field",
             "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.1.0",  # pydantic writes JSON Schema 2020-12, the dialect of OpenAPI 3.1
        "info": {"title": "tandem serving", "version": "1"},
        "paths": {
            "/recommend": {"post": {
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": ok, "400": error, "413": error, "422": error},
            }},
            "/health": {"get": {"responses": {"200": ok}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
        },
    }


def fuzz_api(document: dict[str, Any], base_url: str, *, seed: int, examples: int,
             headers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Every operation of ``document`` in positive and negative mode: status counts and the 5xx cases."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(document)
    found = _Findings()
    for path, methods in document["paths"].items():
        for method in methods:
            operation = schema[path][method.upper()]
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for extra in headers or [{}]:
                    label = f"{method.upper()} {path}"
                    try:
                        _fuzz(operation.as_strategy(mode, headers=extra or None), label, base_url=base_url,
                              seed=seed, examples=examples, found=found)
                    except hypothesis.errors.Unsatisfiable:
                        # Negative mode of an operation with no parameters and no body: nothing invalid to send.
                        found.nothing_to_vary.add(f"{label} {mode.value}")
    return {"nothing_to_vary": sorted(found.nothing_to_vary), "requests": sum(found.statuses.values()),
            "statuses": dict(sorted(found.statuses.items())), "responses_5xx": len(found.server_errors),
            "examples_5xx": found.server_errors[:5], "transport_errors": len(found.transport_errors),
            "examples_transport": found.transport_errors[:5]}


@dataclass
class _Findings:
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    nothing_to_vary: set[str] = field(default_factory=set)


def _fuzz(strategy: Any, label: str, *, base_url: str, seed: int, examples: int, found: _Findings) -> None:
    import hypothesis

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=strategy)
    def send(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a refused or broken connection is a finding
            found.transport_errors.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
            return
        found.statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            found.server_errors.append(f"{label} {case.body!r}"[:300])

    send()


def _start(stack: ChaosStack, token: str) -> tuple[str, str]:
    serve_port, console_port = free_port(), free_port()
    stack.start("serving", "serve", "--port", str(serve_port))
    stack.start("console", "console", "--port", str(console_port), "--no-monitor")
    serve_url, console_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{console_port}"

    def alive() -> None:
        stack.supervisor.check()

    wait_until(lambda: (http_json(f"{serve_url}/health") or {}).get("live_config", {}).get("caught_up") is True,
               timeout_s=120, what="serving's health", alive=alive)
    wait_until(lambda: http_json(f"{console_url}/openapi.json") is not None, timeout_s=120,
               what="the console's OpenAPI document", alive=alive)
    return serve_url, console_url


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    token = secrets.token_hex(16)
    examples = EXAMPLES[quick]
    with chaos_stack(work_dir, prefix="fuzz.", extra_env={"TANDEM_CONSOLE_TOKEN": token}) as stack:
        for path in DEMO_SPEC_PATHS:
            publish_spec(stack.settings, apply_spec(None, load_spec(path), who="chaos", at=1_767_225_600_000))
        serve_url, console_url = _start(stack, token)
        serving = fuzz_api(serving_document(), serve_url, seed=seed, examples=examples)
        console_document = http_json(f"{console_url}/openapi.json")
        console = fuzz_api(console_document, console_url, seed=seed, examples=examples, headers=[
            {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token}"}])
        crashed = {name: code for name, code in
                   ((name, process.poll()) for name, process in stack.supervisor.processes.items()) if code is not None}
        still_answering = {
            "serving": http_json(f"{serve_url}/health") is not None,
            "console": http_json(f"{console_url}/openapi.json") is not None,
        }
    figures = {
        "serving": serving, "console": console, "examples_per_operation_and_mode": examples,
        "crashed_processes": crashed, "answering_after": still_answering,
        "fuzzer": "schemathesis (positive and negative modes) over each OpenAPI document",
    }
    ok = (serving["responses_5xx"] == 0 and console["responses_5xx"] == 0 and not crashed
          and all(still_answering.values()) and serving["transport_errors"] == 0 and console["transport_errors"] == 0
          and serving["requests"] > 0 and console["requests"] > 0)
    return {"scenario": SCENARIO, "ok": ok, "figures": figures,
            "done": f"{serving['requests'] + console['requests']} schemathesis requests to the serving API and the "
                    "console, each a process of its own, from their OpenAPI documents"}
