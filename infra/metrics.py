"""Prometheus ``/metrics`` for every tandem process, with ``prometheus_client``.

A process keeps its figures where its logic keeps them (plain counters, cheap on the
hot path) and describes them as metric families in one function, called at scrape time
(``families``); ``registry(families)`` wraps it for ``prometheus_client`` and
``serve_metrics`` serves it over HTTP on a loopback port of its own (``METRICS_PORTS``).
The serving API and the console answer ``/metrics`` on their own HTTP port with ``exposition``.

``Histogram`` is a cumulative histogram for such code: ``observe`` takes no lock and
allocates nothing (the request path of the serving API calls it), ``family`` turns it
into a ``prometheus_client`` histogram family.

>>> h = Histogram((0.001, 0.01))
>>> h.observe(0.002)
>>> reg = registry(lambda: [h.family("x_seconds", "an example"), counter("x_events", "events", 3)])
>>> print(exposition(reg).decode())  # doctest: +NORMALIZE_WHITESPACE
# HELP x_seconds an example
# TYPE x_seconds histogram
x_seconds_bucket{le="0.001"} 0.0
x_seconds_bucket{le="0.01"} 1.0
x_seconds_bucket{le="+Inf"} 1.0
x_seconds_count 1.0
x_seconds_sum 0.002
# HELP x_events_total events
# TYPE x_events_total counter
x_events_total 3.0
<BLANKLINE>
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

#: The loopback port of each process's ``/metrics`` (the serving API and the console answer
#: ``GET /metrics`` on their own HTTP port). A port already taken is replaced by a free one,
#: logged (the workers also write it to their status file).
METRICS_PORTS: dict[str, int] = {
    "features": 9461,
    "learner": 9462,
    "aggregator": 9463,
    "archiver": 9464,
}

#: The text format ``exposition`` writes (Prometheus 0.0.4), for an HTTP ``Content-Type``.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: Request latency buckets, in seconds (0.5 ms .. 2.5 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Freshness buckets (event published -> readable), in seconds (10 ms .. 60 s).
FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Families = Callable[[], Iterable[Metric]]


class Histogram:
    """A cumulative histogram; ``observe`` is O(log buckets) and allocation-free."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def family(self, name: str, help_text: str) -> HistogramMetricFamily:
        counts = list(self.counts)  # one copy, so the buckets of one scrape are consistent
        cumulative, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        return HistogramMetricFamily(name, help_text, buckets=cumulative, sum_value=self.total)


def counter(name: str, help_text: str, values: float | Mapping[Any, float], label: str | None = None,
            ) -> CounterMetricFamily:
    """A counter family: one value, or one per ``label`` value (sorted)."""
    if not isinstance(values, Mapping):
        return CounterMetricFamily(name, help_text, value=float(values))
    family = CounterMetricFamily(name, help_text, labels=[label or "key"])
    for key, value in sorted(dict(values).items()):
        family.add_metric([str(key)], float(value))
    return family


def gauge(name: str, help_text: str, values: float | Mapping[Any, float], label: str | None = None,
          ) -> GaugeMetricFamily:
    """A gauge family: one value, or one per ``label`` value (sorted)."""
    if not isinstance(values, Mapping):
        return GaugeMetricFamily(name, help_text, value=float(values))
    family = GaugeMetricFamily(name, help_text, labels=[label or "key"])
    for key, value in sorted(dict(values).items()):
        family.add_metric([str(key)], float(value))
    return family


def partition_lag(name: str, help_text: str, lags: Mapping[tuple[str, int], int]) -> GaugeMetricFamily:
    """Records not read yet, per input ``(topic, partition)``."""
    family = GaugeMetricFamily(name, help_text, labels=["topic", "partition"])
    for (topic, partition), lag in sorted(lags.items()):
        family.add_metric([topic, str(partition)], float(lag))
    return family


def consumer_lags(consumer: Any) -> dict[tuple[str, int], int]:
    """Records not read yet per ``(topic, partition)`` assigned to a kafka-python consumer: its fetch
    high-watermark minus its position (``end_offsets`` is wrong on the embedded broker). A
    partition not fetched from yet has no high-watermark and is left out: never a false 0."""
    from kafka.errors import KafkaError

    lags: dict[tuple[str, int], int] = {}
    for tp in list(consumer.assignment()):
        try:
            highwater = consumer.highwater(tp)
            position = None if highwater is None else consumer.position(tp)
        except KafkaError:  # no longer assigned: the group moved it meanwhile
            continue
        if highwater is not None and position is not None:
            lags[(tp.topic, tp.partition)] = max(0, highwater - position)
    return lags


class _Collector(Collector):
    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return list(self._families())


def registry(families: Families) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) whose only collector is ``families``."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(families))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(reg)


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; ``port`` is the one it listens on."""

    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(reg: CollectorRegistry, *, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``reg`` at ``http://host:port/metrics`` from a daemon thread (``port=0``: any free port).

    A port already taken (another tandem process on this host, a test run beside it) is not
    fatal: the metrics are served on a free port instead, and the warning names it."""
    try:
        server, thread = start_http_server(port, addr=host, registry=reg)
    except OSError as exc:
        if port == 0:
            raise
        server, thread = start_http_server(0, addr=host, registry=reg)
        logger.warning("metrics port %s:%d is taken (%s): /metrics is on port %d instead",
                       host, port, exc, server.server_port)
    return MetricsServer(port=int(server.server_port), _server=server, _thread=thread)


class LoopStatus:
    """``/metrics`` for a consumer loop (the aggregator, the archiver): the loop hands it a copy of
    its figures at most every ``interval_s`` (``offer``), and a scrape, on the server's thread,
    reads only the last copy, never the consumer or the live counters. ``port=None``: not served."""

    def __init__(self, name: str, families: Callable[[Mapping[str, Any]], Iterable[Metric]], *,
                 port: int | None, interval_s: float = 1.0) -> None:
        self.name = name
        self.port = port
        self.interval_s = interval_s
        self.status: Mapping[str, Any] = {}
        self._families = families
        self._offered_at = float("-inf")
        self._server: MetricsServer | None = None

    def start(self) -> None:
        if self.port is None:
            return
        self._server = serve_metrics(registry(lambda: self._families(self.status)), port=self.port)
        self.port = self._server.port
        logger.info("%s /metrics on http://127.0.0.1:%d/metrics", self.name, self.port)

    def offer(self, figures: Callable[[], Mapping[str, Any]]) -> None:
        """Take ``figures()`` when the last copy is ``interval_s`` old: one assignment, so a scrape
        sees the old status or the new one."""
        now = time.monotonic()
        if self._server is None or now - self._offered_at < self.interval_s:
            return
        self._offered_at = now
        self.status = figures()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
