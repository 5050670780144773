"""The serving API in-process against the real embedded broker (and, once, the real Feast store)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from experiments.assignment import assign
from experiments.spec import parse_spec, spec_to_json
from infra.kafka.broker import EmbeddedBroker
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EXPOSURES, apply_topics
from infra.settings import Settings, load_settings
from streams.events import Decision, Exposure, ModelSnapshot, decode, encode
from streams.features import default_features
from streams.policies import make_policy
from streams.producer import EventPublisher
from streams.serving import DEFAULT_ARMS, ServingConfig, ServingService, build_app, build_service
from tests.helpers import T0_MS

DAY_MS = 86_400_000

SPEC = {
    "id": "discovery", "salt": "discovery/1", "start": T0_MS, "end": T0_MS + 30 * DAY_MS, "control": "control",
    "variants": [{"name": "control", "weight": 0.5, "policy": "popularity"},
                 {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
    "layer": {"name": "recs", "holdout": 0.1},
    "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                 "measure": "plays", "window": {"length": "7d"}}],
}


class InMemoryFeatures:
    def __init__(self) -> None:
        self.defaults = default_features()

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        return {user: dict(self.defaults) for user in user_ids}


def trained(name: str, updates: int = 100) -> Any:
    policy = make_policy(name, seed=3)
    rng = random.Random(3)
    for _ in range(updates):
        context = {"plays_1h": float(rng.randint(0, 5)), "skip_rate_1h": rng.random()}
        policy.update(context, rng.choice(DEFAULT_ARMS), rng.random())
    return policy


def publish(settings: Settings, topic: str, key: str, value: bytes) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(topic)) as publisher:
        publisher.publish_bytes(key.encode(), value)


def snapshot(name: str, policy: Any) -> bytes:
    return encode(ModelSnapshot(snapshot_id=uuid.uuid4().hex, policy=name, version=policy.version, ts=T0_MS,
                                updates=policy.version, state=policy.to_state()))


@asynccontextmanager
async def serving(settings: Settings, features: Any = None, close_s: float = 5.0, **config: Any) -> AsyncIterator[
        tuple[TestClient, ServingService]]:
    service = build_service(settings, features=features or InMemoryFeatures(), config=ServingConfig(**config))
    service.start()
    try:
        async with TestClient(TestServer(build_app(service))) as client:
            yield client, service
    finally:
        await asyncio.to_thread(service.close, close_s)


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def test_decisions_and_exposures_arrive_keyed_by_user_with_the_policys_propensity(
    settings: Settings, tmp_path: Path
) -> None:
    from feature_store import FeatureStoreClient, FeatureStoreSettings

    apply_topics(settings)
    spec = parse_spec(SPEC)
    linucb = trained("linucb")
    publish(settings, "experiments", "discovery", spec_to_json(spec))
    publish(settings, "models", "linucb", snapshot("linucb", linucb))
    store = FeatureStoreClient(settings=FeatureStoreSettings(repo_path=tmp_path / "feast"),
                               defaults=default_features())
    store.start()
    store.write_rows([{"user_id": "u0", "event_timestamp": T0_MS, **default_features(), "plays_1h": 4}])
    users = [f"u{i}" for i in range(60)]
    answers: dict[str, dict] = {}

    async def run() -> None:
        async with serving(settings, store) as (client, service):
            for user in users:
                response = await client.post("/recommend", json={"user_id": user, "ts": T0_MS + DAY_MS})
                assert response.status == 200
                answers[user] = await response.json()
            await wait_for(lambda: asyncio.sleep(0, service.log.pending == 0))

    try:
        asyncio.run(run())
    finally:
        store.close()
    decisions = [(r.key, decode(r.value, Decision)) for r in read_topic(settings, settings.topic(DECISIONS))]
    exposures = [(r.key, decode(r.value, Exposure)) for r in read_topic(settings, settings.topic(EXPOSURES))]
    assert len(decisions) == len(users)
    for key, decision in decisions:
        answer = answers[decision.user_id]
        assert key == decision.user_id.encode()
        assert (decision.decision_id, decision.arm, decision.policy, decision.policy_version) == (
            answer["decision_id"], answer["arm"], answer["policy"], answer["version"])
        assert decision.propensity == answer["propensity"] and decision.ts == T0_MS + DAY_MS
        policy = linucb if decision.policy == "linucb" else make_policy("popularity", seed=None)
        expected = policy.probabilities(decision.context, decision.arms)[decision.arm]
        assert decision.propensity == pytest.approx(expected, abs=1e-12)
        variant = assign(spec, decision.user_id, at_ms=decision.ts)
        assert decision.assignments == ({} if variant is None else {"discovery": variant})
        expected_context = {k: float(v) for k, v in default_features().items()}
        if decision.user_id == "u0":  # known to the store; everyone else is a cold start: defaults
            expected_context["plays_1h"] = 4.0
        assert decision.context == expected_context
    assert {d.policy_version for _, d in decisions if d.policy == "linucb"} == {linucb.version}
    exposed = {key: e for key, e in exposures}
    assert len(exposed) == len(exposures) == sum(1 for a in answers.values() if a["variant"] is not None)
    for key, exposure in exposed.items():
        assert key == exposure.user_id.encode() and exposure.variant == answers[exposure.user_id]["variant"]
        assert exposure.exposure_id == f"{answers[exposure.user_id]['decision_id']}:discovery"


def test_a_new_snapshot_and_a_new_spec_are_served_without_restart(settings: Settings) -> None:
    apply_topics(settings)

    async def run() -> None:
        async with serving(settings) as (client, _service):
            first = await (await client.post("/recommend", json={"user_id": "u1"})).json()
            assert (first["policy"], first["version"]) == ("popularity", 0)
            assert (await (await client.get("/health")).json())["experiments"] == {}

            policy = trained("popularity", updates=40)
            await asyncio.to_thread(publish, settings, "models", "popularity", snapshot("popularity", policy))
            await asyncio.to_thread(publish, settings, "experiments", "discovery", spec_to_json(parse_spec(SPEC)))

            async def reloaded() -> bool:
                health = await (await client.get("/health")).json()
                return health["policies"].get("popularity") == 40 and "discovery" in health["experiments"]

            await wait_for(reloaded)
            again = await (await client.post("/recommend", json={"user_id": "u1", "ts": T0_MS - 1})).json()
            assert (again["policy"], again["version"]) == ("popularity", 40)
            expected = policy.probabilities({}, list(DEFAULT_ARMS))[again["arm"]]
            assert again["propensity"] == pytest.approx(expected)
            metrics = await (await client.get("/metrics")).text()
            assert 'tandem_serving_policy_version{policy="popularity"} 40' in metrics
            assert 'tandem_serving_reloads_total{topic="models"} 1' in metrics

    asyncio.run(run())


def test_a_stopped_broker_never_fails_responses_and_overflow_is_counted(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        settings = load_settings({}, bootstrap_servers=broker.bootstrap, topic_prefix="down.",
                                 state_dir=tmp_path / "state")
        apply_topics(settings)

        async def run() -> None:
            async with serving(settings, max_pending=50, close_s=0.5) as (client, service):
                for i in range(5):
                    assert (await client.post("/recommend", json={"user_id": f"u{i}"})).status == 200
                await wait_for(lambda: asyncio.sleep(0, service.log.acknowledged["decisions"] == 5))
                await asyncio.to_thread(broker.stop)
                for i in range(150):
                    assert (await client.post("/recommend", json={"user_id": f"v{i}"})).status == 200
                burst = [client.post("/recommend", json={"user_id": f"w{i}"}) for i in range(50)]
                assert all(r.status == 200 for r in await asyncio.gather(*burst))
                assert service.log.pending <= 50
                assert service.log.overflowed["decisions"] == 150  # 200 offered while down, 50 fit
                metrics = await (await client.get("/metrics")).text()
                assert 'tandem_serving_records_overflowed_total{topic="decisions"} 150' in metrics
                health = await (await client.get("/health")).json()
                assert health["status"] == "degraded" and health["decision_log"]["broker_ok"] is False
                await wait_for(lambda: asyncio.sleep(0, service.log.last_error is not None))
                print(f"the producer's last error: {service.log.last_error}")

        asyncio.run(run())
    finally:
        broker.stop()


def test_serve_runs_as_a_process_and_stops_cleanly_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from infra.kafka.broker import free_port

    port = free_port()
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir)}
    code = f"from infra.settings import load_settings; from streams.serving import serve; " \
           f"raise SystemExit(serve(load_settings(), port={port}))"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:  # a file, not a pipe: a full pipe would stall the server's logging
        server = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as response:  # noqa: S310
                    health = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health["status"] == "ok" and health["policies"] == {"popularity": 0}
        request = urllib.request.Request(url + "/recommend", data=b'{"user_id": "someone"}', method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            answer = json.loads(response.read())
        assert answer["arm"] in DEFAULT_ARMS and answer["policy"] == "popularity"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == 0
    decisions = read_topic(settings, settings.topic(DECISIONS))
    assert [r.key for r in decisions] == [b"someone"]
