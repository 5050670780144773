"""``tandem serve``: the serving API as a process, on the configured broker and Feast repository."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from infra.kafka.config import consumer_config, librdkafka_producer_config
from infra.kafka.librdkafka import LibrdkafkaProducer
from infra.kafka.topics import DEAD_LETTERS, DECISIONS, EXPERIMENTS, EXPOSURES, MODELS, STICKY_ASSIGNMENTS
from infra.settings import Settings
from streams.features.online import open_online_store
from streams.serving.decision_log import DecisionLog
from streams.serving.http import build_app
from streams.serving.live_config import LiveConfig, LiveConfigReader
from streams.serving.recommender import FeatureReader
from streams.serving.request import ServingConfig
from streams.serving.service import ServingService
from streams.serving.spool import Spool

logger = logging.getLogger(__name__)

#: The decision log's producer (librdkafka option names): records wait up to 100 ms to
#: share a batch, and are retried for up to 2 minutes before they count as failed.
PRODUCER_OVERRIDES: dict[str, Any] = {"linger.ms": 100, "message.timeout.ms": 120_000}


def build_service(
    settings: Settings, *, features: FeatureReader, config: ServingConfig = ServingConfig(),  # noqa: B008
    producer_overrides: dict[str, Any] | None = None,
) -> ServingService:
    """The service on ``settings``' broker; not started (``start()`` it, or use ``serve``)."""
    # librdkafka's own queue holds at least what the log may leave unacknowledged.
    overrides = {**PRODUCER_OVERRIDES, "queue.buffering.max.messages": max(100_000, config.max_pending),
                 **(producer_overrides or {})}
    log = DecisionLog(
        producer_factory=lambda: _producer(settings, overrides, on_error=log.broker_error),
        topics={DECISIONS.name: settings.topic(DECISIONS), EXPOSURES.name: settings.topic(EXPOSURES),
                DEAD_LETTERS.name: settings.topic(DEAD_LETTERS),
                STICKY_ASSIGNMENTS.name: settings.topic(STICKY_ASSIGNMENTS)},
        max_pending=config.max_pending,
        spool=None if config.spool_dir is None else Spool(config.spool_dir,
                                                           fsync_interval_s=config.spool_fsync_interval_s),
    )
    live = LiveConfig(on_rejected=lambda letter: log.offer(DEAD_LETTERS.name, letter))
    reader = LiveConfigReader(
        live=live,
        consumer_config=consumer_config(settings, group_id=None),
        experiments_topic=settings.topic(EXPERIMENTS),
        models_topic=settings.topic(MODELS),
        sticky_topic=settings.topic(STICKY_ASSIGNMENTS),
    )
    return ServingService(features=features, live=live, log=log, config=config, reader=reader)


def _producer(settings: Settings, overrides: dict[str, Any], *,
              on_error: Callable[[str], Any]) -> LibrdkafkaProducer:
    return LibrdkafkaProducer(librdkafka_producer_config(settings, **overrides), on_error=on_error)


async def run_server(service: ServingService, *, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``service`` on ``host:port`` until ``stop`` is set."""
    runner = web.AppRunner(build_app(service), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        logger.info("serving on http://%s:%d (default policy %s, arms %s)", host, port,
                    service.config.default_policy, ",".join(service.config.arms))
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8080,
    config: ServingConfig = ServingConfig(),  # noqa: B008 - frozen
    spool: bool = True,
) -> int:
    """Run the serving API until SIGINT or SIGTERM; 0 on a clean stop.

    Without a ``spool_dir`` in ``config``, the spool is ``<state_dir>/serving-spool/<port>``;
    ``spool=False``: no spool (a SIGKILL loses the records not yet delivered).
    """
    from infra.errors import ProvisioningError
    from infra.kafka.topics import apply_topics

    try:
        apply_topics(settings)
    except ProvisioningError as exc:  # serve anyway: the log buffers and the live config keeps trying
        logger.error("topics not checked (%s); serving with the default policy until the broker answers", exc)
    if not spool:
        config = dataclasses.replace(config, spool_dir=None)
    elif config.spool_dir is None:
        config = dataclasses.replace(config, spool_dir=settings.state_dir / "serving-spool" / str(port))
    features = open_online_store(settings)
    service = build_service(settings, features=features, config=config).start()
    # Feast, pandas and dask leave ~250k long-lived objects; a full collection then scans them all
    # (~115 ms measured) in the middle of some request. Freeze them out of the collector's reach.
    gc.collect()
    gc.freeze()
    # The event loop gives up the GIL at every socket call; the Feast-reading and Kafka threads
    # then keep it up to the switch interval (5 ms by default). 1 ms cut p99 ~4x at 500 req/s.
    sys.setswitchinterval(config.gil_switch_interval_s)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_server(service, host=host, port=port, stop=stop)

    try:
        asyncio.run(main())
    finally:
        service.close()
        with contextlib.suppress(Exception):
            features.close()
    logger.info("serving stopped: %s", service.health()["decision_log"])
    return 0
