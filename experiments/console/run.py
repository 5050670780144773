"""The console's process: follow the topics, run the automatic stop, serve the API and pages.

``open_console`` wires the parts (the caller closes them); ``serve_console`` runs them until
SIGTERM/SIGINT, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from experiments.console.app import DEFAULT_MAX_IN_FLIGHT, build_app
from experiments.console.service import Console
from experiments.console.state import ConsoleState, TopicFollower
from experiments.lifecycle import DecisionRecord
from experiments.spec import ExperimentSpec, spec_to_json
from infra.kafka.config import consumer_config, producer_config
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topics import EXPERIMENT_DECISIONS, EXPERIMENT_METRICS, EXPERIMENTS, apply_topics
from infra.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


class KafkaWriter:
    """Publishes spec versions and decision records and waits for the broker's acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publisher = KafkaPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENTS))

    def publish_spec(self, spec: ExperimentSpec) -> None:
        self._publisher.publish_bytes(spec.id.encode(), spec_to_json(spec))
        self._publisher.flush()

    def publish_decision(self, record: DecisionRecord) -> None:
        self._publisher.publish_bytes(record.experiment.encode(), record.to_json(),
                                      topic=self._settings.topic(EXPERIMENT_DECISIONS))
        self._publisher.flush()

    def close(self) -> None:
        self._publisher.close()


@dataclass
class RunningConsole:
    console: Console
    follower: TopicFollower
    writer: KafkaWriter


@contextlib.contextmanager
def open_console(
    settings: Settings, *, monitor: bool = True, ready_timeout_s: float = 60.0
) -> Iterator[RunningConsole]:
    """The console's state, read to the end of its topics, with the automatic stop on every update."""
    apply_topics(settings)
    state = ConsoleState()
    writer = KafkaWriter(settings)
    console = Console(state=state, writer=writer)
    follower = TopicFollower(
        state=state, consumer_config=consumer_config(settings, group_id=None),
        experiments_topic=settings.topic(EXPERIMENTS), metrics_topic=settings.topic(EXPERIMENT_METRICS),
        decisions_topic=settings.topic(EXPERIMENT_DECISIONS), on_metrics=console.check if monitor else None,
    )
    follower.start()
    try:
        if not follower.wait_ready(ready_timeout_s):
            logger.warning("console: topics not read to their end within %.0f s (%s)", ready_timeout_s,
                           follower.last_error)
        yield RunningConsole(console, follower, writer)
    finally:
        follower.close()
        writer.close()


def serve_console(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  monitor: bool = True, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> int:
    with open_console(settings, monitor=monitor) as running:
        app = build_app(running.console, token=settings.console_token, max_in_flight=max_in_flight)
        asyncio.run(_serve(app, host, port))
    return 0


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    logger.info("console on http://%s:%d/experiments", host, port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
