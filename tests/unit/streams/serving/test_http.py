"""The HTTP adapter in-process, with an in-memory feature reader and a fake producer (no broker)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.features import default_features
from streams.serving import DecisionLog, LiveConfig, ServingConfig, ServingService, build_app
from tests.helpers import T0_MS, RecordingProducer


class Features:
    """A read of one of ``slow_users`` waits for ``gate``: a store slow for as long as the test wants."""

    def __init__(self, fail: bool = False, in_process: bool = False, slow_users: frozenset[str] = frozenset(),
                 gate: threading.Event | None = None) -> None:
        self.defaults = default_features()
        self.fail, self.slow_users, self.gate = fail, slow_users, gate or threading.Event()
        self.reads_in_process = in_process
        self.read_on: set[int] = set()  # the threads that read
        self.reading_slowly = threading.Event()  # set while a slow read is in progress

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        self.read_on.add(threading.get_ident())
        if self.slow_users & set(user_ids):
            self.reading_slowly.set()
            self.gate.wait(timeout=60)
            self.reading_slowly.clear()
        if self.fail:
            raise RuntimeError("store is down")
        return {u: {**self.defaults, "plays_1h": 3 if u == "known" else 0} for u in user_ids}


def run(check: Callable[[TestClient, ServingService], Awaitable[None]], **kwargs: Any) -> RecordingProducer:
    producer = RecordingProducer()
    # A read in a thread may take long on a busy machine: only the tests of the timeout set one.
    config = ServingConfig(**{"feature_timeout_s": 60.0, **kwargs.pop("config", {})})
    log = DecisionLog(producer_factory=lambda: producer, topics={"decisions": "d", "exposures": "x"})
    service = ServingService(features=kwargs.pop("features", Features()), live=LiveConfig(), log=log,
                             config=config).start()

    async def main() -> None:
        async with TestClient(TestServer(build_app(service))) as client:
            await check(client, service)

    try:
        asyncio.run(main())
    finally:
        service.close()
    return producer


def test_recommend_answers_and_logs_the_decision() -> None:
    async def check(client: TestClient, service: ServingService) -> None:
        response = await client.post("/recommend", json={"user_id": "known", "ts": T0_MS})
        assert response.status == 200
        body = await response.json()
        assert body["arm"] in service.config.arms and body["policy"] == "popularity" and body["version"] == 0
        assert body["propensity"] == 1 / 8 and body["variant"] is None and body["ts"] == T0_MS
        assert len(body["decision_id"]) == 32

    producer = run(check)
    (topic, key, value), = producer.sent
    decision = json.loads(value)
    assert (topic, key, decision["context"]["plays_1h"], decision["ts"]) == ("d", b"known", 3.0, T0_MS)


def test_invalid_requests_get_4xx_with_a_reason() -> None:
    async def check(client: TestClient, service: ServingService) -> None:
        cases = [
            (b"{oops", 400, "malformed JSON"),
            (b'{"candidates": ["a"]}', 400, "user_id: Field required"),
            (b'{"user_id": 1}', 400, "user_id: Input should be a valid string"),
            (b'{"user_id": "u", "candidates": []}', 400, "candidates"),
            (b'{"user_id": "u", "candidates": ["a", "b", "c"]}', 400, "at most 2 candidates"),
            (b'{"user_id": "u", "extra": 1}', 400, "extra: unknown field"),
            (b'{"user_id": "' + b"x" * 20_000 + b'"}', 413, "byte limit"),
        ]
        for body, status, reason in cases:
            response = await client.post("/recommend", data=body)
            assert response.status == status, body[:40]
            assert reason in (await response.json())["error"]
        assert (await client.get("/recommend")).status == 405
        assert (await client.get("/nowhere")).status == 404

    producer = run(check, config={"max_candidates": 2})
    assert producer.sent == []


def test_a_slow_or_failing_store_falls_back_to_default_features() -> None:
    gate = threading.Event()  # shut until the answer is in: the read cannot beat the timeout

    async def check(client: TestClient, service: ServingService) -> None:
        response = await client.post("/recommend", json={"user_id": "known"})
        assert response.status == 200
        assert service.feature_reads.fallbacks["timeout"] == 1
        gate.set()

    producer = run(check, features=Features(slow_users=frozenset({"known"}), gate=gate),
                   config={"feature_timeout_s": 0.02})
    assert json.loads(producer.sent[0][2])["context"]["plays_1h"] == 0.0

    async def check_error(client: TestClient, service: ServingService) -> None:
        assert (await client.post("/recommend", json={"user_id": "known"})).status == 200
        assert service.feature_reads.fallbacks["error"] == 1

    run(check_error, features=Features(fail=True))


def test_an_in_process_store_is_read_on_the_event_loop_and_any_other_off_it() -> None:
    loop_threads: set[int] = set()

    async def check(client: TestClient, service: ServingService) -> None:
        loop_threads.add(threading.get_ident())
        service.features.read_on.clear()  # type: ignore[attr-defined] - the warm-up read at start
        response = await client.post("/recommend", json={"user_id": "known"})
        assert response.status == 200 and service.feature_reads.latency.count == 1

    for in_process, setting, on_the_loop in ((True, "auto", True), (False, "auto", False),
                                             (True, "thread", False), (False, "inline", True)):
        features = Features(in_process=in_process)
        producer = run(check, features=features, config={"feature_reads": setting})
        assert (features.read_on <= loop_threads) is on_the_loop and len(features.read_on) == 1
        assert json.loads(producer.sent[0][2])["context"]["plays_1h"] == 3.0


def test_a_failing_in_process_store_falls_back_to_default_features() -> None:
    async def check(client: TestClient, service: ServingService) -> None:
        for _ in range(2):
            assert (await client.post("/recommend", json={"user_id": "known"})).status == 200
        assert service.feature_reads.fallbacks == {"error": 2}
        assert 'tandem_serving_feature_fallbacks_total{reason="error"} 2' in await (
            await client.get("/metrics")).text()

    producer = run(check, features=Features(fail=True, in_process=True))
    assert json.loads(producer.sent[0][2])["context"]["plays_1h"] == 0.0


def test_health_and_metrics() -> None:
    async def check(client: TestClient, service: ServingService) -> None:
        for _ in range(3):
            await client.post("/recommend", json={"user_id": "u"})
        await client.post("/recommend", data=b"[]")
        health = await client.get("/health")
        assert health.status == 200
        status = await health.json()
        assert status["policies"] == {"popularity": 0} and status["decision_log"]["pending"] >= 0
        assert status["live_config"]["caught_up"] is True  # no reader: nothing to wait for
        metrics = await client.get("/metrics")
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await metrics.text()
        assert 'tandem_serving_requests_total{route="/recommend",status="200"} 3' in text
        assert 'tandem_serving_requests_total{route="/recommend",status="400"} 1' in text
        assert 'tandem_serving_recommend_latency_seconds_bucket{le="+Inf"} 4' in text
        assert 'tandem_serving_policy_version{policy="popularity"} 0' in text
        assert 'tandem_serving_records_overflowed_total{topic="decisions"} 0' in text
        assert "tandem_serving_records_pending 0" in text or "tandem_serving_records_pending " in text

    run(check)


def test_the_event_loop_is_never_blocked_by_feature_reads() -> None:
    gate = threading.Event()  # the read runs until the health answer is in
    features = Features(slow_users=frozenset({"a"}), gate=gate)

    async def check(client: TestClient, service: ServingService) -> None:
        slow = asyncio.ensure_future(client.post("/recommend", json={"user_id": "a"}))
        while not features.reading_slowly.is_set() and not slow.done():
            await asyncio.sleep(0.01)
        assert (await client.get("/health")).status == 200
        # A read on the event loop would have held the health answer until it ended (60 s at most).
        answered_during_the_read = features.reading_slowly.is_set()
        gate.set()
        assert answered_during_the_read
        assert (await slow).status == 200

    run(check, features=features)


def test_serve_binds_loopback_unless_told_otherwise() -> None:
    import inspect

    from streams.serving import serve

    parameters = inspect.signature(serve).parameters
    assert (parameters["host"].default, parameters["port"].default) == ("127.0.0.1", 8080)
    assert parameters["host"].kind is inspect.Parameter.KEYWORD_ONLY


def test_tandem_serve_passes_the_feature_reads_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.serving.commands as serving_commands
    from infra.cli import build_parser
    from infra.cli.commands import cmd_serve

    served: dict[str, Any] = {}
    monkeypatch.setattr(serving_commands, "serve", lambda settings, **kw: served.update(kw) or 0)
    parser = build_parser()
    assert cmd_serve(parser.parse_args(["serve", "--feature-reads", "thread"]), None) == 0  # type: ignore[arg-type]
    assert served["config"].feature_reads == "thread" and served["host"] == "127.0.0.1"
    assert parser.parse_args(["serve"]).feature_reads == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--feature-reads", "sometimes"])
