"""The console against the real broker: stop reaches serving, decisions survive a restart, the automatic stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bench.bench_lifecycle import DefaultFeatures, stop_to_serving, treated_user
from experiments.console import build_app, open_console
from experiments.lifecycle import apply_spec, publish_spec, read_decisions, read_specs
from experiments.spec import DEMO_SPEC_PATH, load_spec
from infra.kafka.topics import apply_topics
from infra.settings import Settings
from streams.serving import ServingConfig, build_service
from streams.serving.request import RecommendRequest
from tests.helpers import T0_MS

TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY_MS = 86_400_000


async def until(check: Any, *, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s")


def test_a_stop_reaches_serving_and_the_decision_is_readable_after_a_restart(settings: Settings) -> None:
    apply_topics(settings)
    spec = load_spec(DEMO_SPEC_PATH)
    publish_spec(settings, apply_spec(None, spec, who="owner", at=T0_MS))
    user = treated_user(spec)
    request = RecommendRequest(user_id=user, ts=T0_MS + DAY_MS)

    async def main() -> str:
        service = build_service(settings, features=DefaultFeatures(), config=ServingConfig()).start()
        try:
            first = await service.recommend(request)
            assert (first["experiment"], first["variant"], first["policy"]) == (spec.id, "treatment", "linucb")
            with open_console(settings, monitor=False) as running:
                async with TestClient(TestServer(build_app(running.console, token=SecretStr(TOKEN)))) as client:
                    refused = await client.post(f"/api/experiments/{spec.id}/stop", json={"why": "x"})
                    assert refused.status == 401
                    assert (await service.recommend(request))["experiment"] == spec.id
                    stopped = await client.post(f"/api/experiments/{spec.id}/stop",
                                                json={"why": "retention looks bad", "who": "owner"}, headers=AUTH)
                    assert stopped.status == 200, await stopped.text()

                    async def serves_control() -> dict[str, Any] | None:
                        out = await service.recommend(request)
                        return out if out["experiment"] is None else None

                    after = await until(serves_control)
                    # The control's policy, no assignment, no exposure.
                    assert after["policy"] == "popularity" and after["assignments"] == {}
                    decided = await client.post(f"/api/experiments/{spec.id}/decide",
                                                json={"note": "keep the control", "who": "owner"}, headers=AUTH)
                    assert decided.status == 200, await decided.text()
                    return (await decided.json())["decision"]["decision_id"]
        finally:
            await asyncio.to_thread(service.close, 5.0)

    decision_id = asyncio.run(main())

    async def after_restart() -> None:
        with open_console(settings, monitor=False) as running:
            async with TestClient(TestServer(build_app(running.console, token=None))) as client:
                detail = await (await client.get(f"/api/experiments/{spec.id}")).json()
        assert detail["status"] == "decided" and detail["decision"]["decision_id"] == decision_id
        assert detail["decision"]["note"] == "keep the control" and detail["decision"]["spec_version"] == 3
        assert [t["status"] for t in detail["history"]] == ["running", "stopped", "decided"]

    asyncio.run(after_restart())
    assert [d.decision_id for d in read_decisions(settings)] == [decision_id]
    assert read_specs(settings)[spec.id].status == "decided"


def test_a_harmful_treatment_is_stopped_by_the_monitor_and_serving_follows(settings: Settings) -> None:
    result = asyncio.run(stop_to_serving(settings, harmful_from_day=3, days=10))
    assert result["crossed_day"] >= 3 and "retention_d7 is significantly worse in treatment" in result["reason"]
    (spec,) = read_specs(settings).values()
    assert spec.status == "stopped" and spec.history[-1].who == "monitor"


def test_the_cli_stops_and_decides_and_refuses_to_decide_a_running_experiment(settings: Settings) -> None:
    apply_topics(settings)
    spec = load_spec(DEMO_SPEC_PATH)
    publish_spec(settings, apply_spec(None, spec, who="owner", at=T0_MS))
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir)}

    def tandem(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300, check=False, cwd=Path(__file__).resolve().parents[2])

    refused = tandem("experiments", "decide", spec.id)
    assert refused.returncode != 0 and "is running; stop it first or decide with force" in refused.stderr
    stopped = tandem("experiments", "stop", spec.id, "--why", "done", "--who", "ana")
    assert stopped.returncode == 0, stopped.stderr
    decided = tandem("experiments", "decide", spec.id, "--note", "no ship")
    assert decided.returncode == 0, decided.stderr
    assert [d.note for d in read_decisions(settings)] == ["no ship"]
    listed = tandem("experiments", "list")
    assert listed.returncode == 0 and f"{spec.id}" in listed.stdout and " decided " in listed.stdout
    unknown = tandem("experiments", "stop", "nope")
    assert unknown.returncode != 0 and "'nope' is not known" in unknown.stderr
