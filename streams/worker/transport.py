"""Faust's aiokafka transport with the fetch wait tandem's consumers use.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` and no setting to
change it. The embedded broker holds a fetch with no new data for about that long
even when records arrive meanwhile (``infra.kafka.config``), which alone put the
features' freshness p50/p99 at ~0.4/0.8 s. ``PromptApp`` is a ``faust.App`` whose
transport gives its consumer ``infra.kafka.config.fetch_max_wait_ms`` instead.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka reads it when the consumer starts (its Fetcher is built in start()).
            consumer._fetch_max_wait_ms = wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class PromptApp(faust.App):
    """A ``faust.App`` whose consumer fetches with ``fetch_max_wait_ms`` (None: Faust's default)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        if self.fetch_max_wait_ms is None:
            return super()._new_transport()
        return _Transport(self.conf.broker_consumer, self)
