"""The aggregator's feed of the experiments topic reads to the end the broker states now."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from experiments.aggregation.aggregator import SpecFeed

TOPIC = "t.experiments"
PARTITION = TopicPartition(TOPIC, 0)


class StaleHighwaterConsumer:
    """A spec acknowledged after the consumer's last fetch: the fetch's high-watermark still says 0,
    the broker's end offset says 1, and the record comes with the next fetch but one."""

    def __init__(self) -> None:
        self._position = 0
        self._polls = 0

    def highwater(self, partition: Any) -> int:
        return 0

    def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 1)

    def position(self, partition: Any) -> int:
        return self._position

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        self._polls += 1
        if self._polls < 2:
            return {}
        self._position = 1
        return {PARTITION: [SimpleNamespace(topic=TOPIC, partition=0, offset=0, key=b"x", value=b"{}")]}


def test_a_spec_acknowledged_after_the_last_fetch_is_read() -> None:
    """Regression: the feed stopped at the last fetch's high-watermark and missed the spec, and the
    exposures to it in the same batch were dead-lettered (137 in a loaded blast-radius run)."""
    feed = SpecFeed.__new__(SpecFeed)
    feed._consumer = StaleHighwaterConsumer()
    feed._assigned = [PARTITION]
    feed._topic = TOPIC
    records = feed.read_to_end(timeout_s=5.0)
    assert [(r.topic, r.offset, r.key) for r in records] == [(TOPIC, 0, b"x")]
