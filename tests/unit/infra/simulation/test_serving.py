"""The driver against the real serving API in process (in-memory features, fake producer, no broker)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from experiments.spec import spec_to_json
from infra.settings import Settings
from infra.simulation.driver import run_simulation
from infra.simulation.offline import load_demo_spec
from streams.features import default_features
from streams.serving import DecisionLog, LiveConfig, ServingConfig, ServingService, build_app
from tests.helpers import RecordingProducer
from tests.unit.infra.simulation.test_driver import MemoryPublisher, _free_port

SPEC = load_demo_spec()


class Features:
    def __init__(self) -> None:
        self.defaults = default_features()

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        return {u: dict(self.defaults) for u in user_ids}


def test_first_exposures_and_variants_agree_with_what_serving_logged() -> None:
    producer = RecordingProducer()
    live = LiveConfig()
    live.apply_spec(SPEC.id.encode(), spec_to_json(SPEC))
    log = DecisionLog(producer_factory=lambda: producer, topics={"decisions": "d", "exposures": "x"})
    service = ServingService(features=Features(), live=live, log=log, config=ServingConfig()).start()
    port = _free_port()

    async def main():
        runner = web.AppRunner(build_app(service))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await run_simulation(settings=Settings(), serve_url=f"http://127.0.0.1:{port}", users=30,
                                        seed=2, publisher=MemoryPublisher(), concurrency=8, spec=SPEC)
        finally:
            await runner.cleanup()

    try:
        result = asyncio.run(main())
    finally:
        service.close()
    assert result.serving_errors == {}
    first: dict[str, tuple[int, str]] = {}
    for topic, _, value in producer.sent:
        if topic == "x":
            exposure = json.loads(value)
            user = exposure["user_id"]
            if user not in first or exposure["ts"] < first[user][0]:
                first[user] = (exposure["ts"], exposure["variant"])
    decisions = sum(topic == "d" for topic, _, _ in producer.sent)
    assert decisions == result.recommendations
    assert sum(result.exposed.values()) == len(first) > 20
    by_variant = {v: sum(1 for _, variant in first.values() if variant == v) for v in result.exposed}
    assert by_variant == result.exposed
