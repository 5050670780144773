"""The metrics helper: families through prometheus_client's parser, and a taken port is not fatal."""

from __future__ import annotations

import socket
import urllib.request

from kafka import TopicPartition
from kafka.errors import IllegalStateError
from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import (
    Histogram,
    LoopStatus,
    consumer_lags,
    counter,
    exposition,
    gauge,
    registry,
    serve_metrics,
)


def parsed(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_families_read_at_scrape_time() -> None:
    figures = {"n": 1}
    latency = Histogram((0.01, 0.1))
    reg = registry(lambda: [counter("t_events", "events", {"ok": figures["n"], "bad": 0}, "outcome"),
                            gauge("t_waiting", "waiting", 7), latency.family("t_latency_seconds", "latency")])
    for seconds in (0.005, 0.05, 5.0):
        latency.observe(seconds)
    figures["n"] = 4
    samples = parsed(exposition(reg).decode())
    assert samples[("t_events_total", (("outcome", "ok"),))] == 4
    assert samples[("t_events_total", (("outcome", "bad"),))] == 0
    assert samples[("t_waiting", ())] == 7
    assert samples[("t_latency_seconds_bucket", (("le", "0.01"),))] == 1
    assert samples[("t_latency_seconds_bucket", (("le", "0.1"),))] == 2
    assert samples[("t_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("t_latency_seconds_count", ())] == 3


def test_a_taken_port_falls_back_to_a_free_one() -> None:
    reg = registry(lambda: [gauge("t_up", "up", 1)])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = serve_metrics(reg, port=taken.getsockname()[1])
        try:
            assert server.port != taken.getsockname()[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:  # noqa: S310
                assert parsed(response.read().decode())[("t_up", ())] == 1
        finally:
            server.close()


class FetchedConsumer:
    """What ``consumer_lags`` reads of a kafka-python consumer: assignment, high-watermarks, positions."""

    def __init__(self, highwater: dict, position: dict, revoked: set) -> None:
        self._highwater, self._position, self._revoked = highwater, position, revoked

    def assignment(self) -> set:
        return set(self._highwater)

    def highwater(self, tp: TopicPartition) -> int | None:
        if tp in self._revoked:
            raise IllegalStateError("Partition is not assigned")
        return self._highwater[tp]

    def position(self, tp: TopicPartition) -> int:
        return self._position[tp]


def test_consumer_lag_is_the_fetch_highwater_minus_the_position() -> None:
    read, caught_up, unfetched, revoked = (TopicPartition("t", p) for p in range(4))
    consumer = FetchedConsumer(highwater={read: 10, caught_up: 5, unfetched: None, revoked: 9},
                               position={read: 4, caught_up: 5, unfetched: 0, revoked: 0}, revoked={revoked})
    assert consumer_lags(consumer) == {("t", 0): 6, ("t", 1): 0}  # never a false 0 for the others


def test_a_loop_status_serves_the_last_copy_it_took_and_takes_one_per_interval() -> None:
    families = lambda status: [counter("t_loop_records", "records", status.get("records", 0))]  # noqa: E731
    off = LoopStatus("loop", families, port=None)
    off.start()
    off.offer(lambda: {"records": 1})
    assert off.status == {} and off.port is None  # not served: nothing copied

    status = LoopStatus("loop", families, port=0, interval_s=3600)
    status.start()
    try:
        status.offer(lambda: {"records": 5})
        status.offer(lambda: {"records": 9})  # within the interval: not taken
        with urllib.request.urlopen(f"http://127.0.0.1:{status.port}/metrics", timeout=10) as response:  # noqa: S310
            text = response.read().decode()
    finally:
        status.close()
    assert parsed(text)[("t_loop_records_total", ())] == 5
