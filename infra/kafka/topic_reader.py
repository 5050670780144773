"""Reading a whole topic up to its current end, the way this broker allows.

The embedded broker under-reports LATEST offsets, so "the end" is the fetch
high-watermark each partition reports once it has been fetched from, never
``end_offsets``. Topics called compacted are not compacted by that broker, so
``newest_per_key`` does the compaction on the reader's side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from infra.kafka.config import consumer_config
from infra.settings import Settings


def read_topic(settings: Settings, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning to the high-watermark, without a group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_config(settings, group_id=None, consumer_timeout_ms=1000))
    try:
        deadline = time.monotonic() + timeout_s
        assigned = [TopicPartition(topic, partition) for partition in partitions_of(consumer, topic, timeout_s)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        while True:
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for partition_records in batch.values():
                records.extend(partition_records)
            if all(caught_up(consumer, tp) for tp in assigned):
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end within {timeout_s} s")
    finally:
        consumer.close()


def partitions_of(consumer: Any, topic: str, timeout_s: float = 30.0) -> list[int]:
    """The topic's partition numbers, once the broker's metadata names the topic."""
    deadline = time.monotonic() + timeout_s
    while (partitions := consumer.partitions_for_topic(topic)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} not found within {timeout_s} s")
        time.sleep(0.2)
    return sorted(partitions)


def caught_up(consumer: Any, partition: Any) -> bool:
    """The consumer has read ``partition`` to the high-watermark of its last fetch (an empty one too)."""
    highwater = consumer.highwater(partition)
    return highwater is not None and consumer.position(partition) >= highwater


def newest_per_key(records: Iterable[Any]) -> dict[bytes | None, Any]:
    """Reader-side compaction: the last record of each key, in topic order per partition."""
    newest: dict[bytes | None, Any] = {}
    for record in records:
        newest[record.key] = record
    return newest
