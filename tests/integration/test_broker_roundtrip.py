"""The foundation against the real embedded broker: publish, consume, groups, offsets, other clients."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.kafka.broker import EmbeddedBroker
from infra.kafka.config import consumer_config, producer_config
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EVENTS, EXPERIMENT_METRICS, TOPICS, apply_topics
from infra.settings import Settings
from streams.errors import DeliveryError
from streams.events import decode_event, encode
from streams.producer import EventPublisher
from tests.helpers import make_event


def publish(settings: Settings, numbers: range) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for number in numbers:
            publisher.publish(make_event(number))
        publisher.flush()
        assert publisher.stats.acknowledged == len(numbers)
        assert publisher.stats.failed == 0


def consume(consumer: KafkaConsumer, expected: int, timeout_s: float = 120.0) -> list:
    seen: list = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(records)
    return seen


def test_topic_provisioning_is_idempotent(settings: Settings) -> None:
    first = apply_topics(settings)
    second = apply_topics(settings)
    assert sorted(first.created) == sorted(settings.topic(spec.name) for spec in TOPICS)
    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    assert second.mismatched == []


def test_published_events_are_read_back_by_a_consumer_group(settings: Settings, group_id: str) -> None:
    apply_topics(settings)
    publish(settings, range(500))
    consumer = KafkaConsumer(settings.topic(EVENTS), **consumer_config(settings, group_id=group_id))
    try:
        records = consume(consumer, 500)
    finally:
        consumer.close()
    events = [decode_event(record.value) for record in records]
    assert sorted(event.event_id for event in events) == sorted(f"e-{n}" for n in range(500))
    assert all(record.key == event.user_id.encode() for record, event in zip(records, events, strict=True))
    # One user's events stay on one partition, in order.
    partitions_by_user: dict[str, set[int]] = {}
    for record, event in zip(records, events, strict=True):
        partitions_by_user.setdefault(event.user_id, set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in partitions_by_user.values())


def test_two_consumers_in_one_group_split_the_partitions_and_see_every_record_once(
    settings: Settings, group_id: str
) -> None:
    apply_topics(settings)
    config = consumer_config(settings, group_id=group_id, enable_auto_commit=True)
    members = [KafkaConsumer(settings.topic(EVENTS), **config) for _ in range(2)]
    seen: list[tuple[int, Any]] = []
    stop = threading.Event()

    # Each member polls in its own thread, as each would in its own process. Polling both from one
    # thread in turn livelocks kafka-python 3.0.12 under load: a join that completes while its
    # consumer is not inside poll() is discarded and sent again (coordinator/base.py,
    # join_group_async), which restarts the rebalance for the other member (docs/architecture.md).
    def poll(index: int) -> None:
        while not stop.is_set():
            for records in members[index].poll(timeout_ms=1000).values():
                seen.extend((index, record) for record in records)

    threads = [threading.Thread(target=poll, args=(index,), daemon=True) for index in range(2)]
    for thread in threads:
        thread.start()
    try:
        # Let the group settle before anything is published, so no record is fetched twice by a
        # rebalance: settled once each member holds partitions of the same generation (a member
        # still rejoining keeps the old generation's partitions, which overlap the other's).
        def settled() -> bool:
            ours, theirs = members[0].assignment(), members[1].assignment()
            return bool(ours) and bool(theirs) and not ours & theirs and len(ours | theirs) == settings.partitions

        deadline = time.monotonic() + 120
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert settled(), (members[0].assignment(), members[1].assignment())

        publish(settings, range(1000))
        deadline = time.monotonic() + 120
        while len(seen) < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for member in members:
            member.close()
    counts = Counter(decode_event(record.value).event_id for _, record in seen)
    assert len(counts) == 1000
    assert max(counts.values()) == 1
    assert {index for index, _ in seen} == {0, 1}


def test_committed_offsets_survive_a_consumer_restart(settings: Settings, group_id: str) -> None:
    apply_topics(settings)
    publish(settings, range(200))
    first = KafkaConsumer(settings.topic(EVENTS), **consumer_config(settings, group_id=group_id))
    try:
        assert len(consume(first, 200)) == 200
        first.commit()
    finally:
        first.close()

    publish(settings, range(200, 260))
    second = KafkaConsumer(settings.topic(EVENTS), **consumer_config(settings, group_id=group_id))
    try:
        records = consume(second, 60)
        records += consume(second, 1, timeout_s=2)  # nothing more should come
    finally:
        second.close()
    assert sorted(decode_event(r.value).event_id for r in records) == sorted(f"e-{n}" for n in range(200, 260))


def test_confluent_kafka_and_tandem_read_each_other(settings: Settings, group_id: str) -> None:
    import confluent_kafka  # librdkafka: a client independent of kafka-python and aiokafka
    apply_topics(settings)
    topic = settings.topic(EVENTS)
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.resolved_bootstrap(), "acks": "all"})
    foreign = json.dumps(
        {"event_id": "from-librdkafka", "user_id": "u-x", "ts": 1_767_225_600_000, "type": "like", "item_id": "i"}
    )
    producer.produce(topic, key=b"u-x", value=foreign.encode())
    assert producer.flush(10) == 0
    publish(settings, range(3))

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.resolved_bootstrap(),
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + 120
    try:
        while len(received) < 4 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message.value())
    finally:
        consumer.close()
    events = {decode_event(value).event_id: decode_event(value) for value in received}
    assert set(events) == {"from-librdkafka", "e-0", "e-1", "e-2"}
    assert events["from-librdkafka"].type.value == "like"
    assert events["e-1"] == make_event(1)

    # And tandem's own reader sees the record librdkafka wrote.
    ours = [decode_event(record.value).event_id for record in read_topic(settings, topic)]
    assert "from-librdkafka" in ours


def test_reader_side_compaction_keeps_the_newest_record_per_key(settings: Settings) -> None:
    apply_topics(settings)
    topic = settings.topic(EXPERIMENT_METRICS)
    with EventPublisher(config=producer_config(settings), topic=topic) as publisher:
        for version in range(3):
            for key in ("exp/control/plays", "exp/treatment/plays"):
                publisher.publish_bytes(key.encode(), json.dumps({"key": key, "version": version}).encode())
    newest = newest_per_key(read_topic(settings, topic))
    assert {key: json.loads(record.value)["version"] for key, record in newest.items()} == {
        b"exp/control/plays": 2,
        b"exp/treatment/plays": 2,
    }


def test_delivery_failures_are_raised_not_swallowed(settings: Settings, tmp_path) -> None:
    # A broker of this test's own, stopped under the publisher: deliveries must fail loudly.
    with EmbeddedBroker(log_path=tmp_path / "doomed.log") as doomed:
        local = settings.model_copy(update={"bootstrap_servers": doomed.bootstrap})
        apply_topics(local)
        # A record fails 10 s after it is sent: ample for the first (broker up), soon for the rest.
        config = producer_config(local, max_block_ms=2000, request_timeout_ms=1000, delivery_timeout_ms=10_000)
        publisher = EventPublisher(config=config, topic=local.topic("events"))
        publisher.publish(make_event(1))
        publisher.flush(timeout_s=60)
        doomed.stop()
        with pytest.raises(DeliveryError, match="records"):
            for number in range(2, 50):
                publisher.publish(make_event(number))
            publisher.close(timeout_s=60)
    assert publisher.stats.acknowledged == 1
    assert publisher.stats.failed + publisher.pending == 48


def test_a_partition_high_watermark_marks_the_end(settings: Settings) -> None:
    apply_topics(settings)
    publish(settings, range(50))
    consumer = KafkaConsumer(**consumer_config(settings, group_id=None))
    partitions = [TopicPartition(settings.topic(EVENTS), p) for p in range(settings.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    try:
        total = len(consume(consumer, 50))
        assert sum(consumer.highwater(tp) or 0 for tp in partitions) == total == 50
    finally:
        consumer.close()
    encoded = encode(make_event(1))
    assert decode_event(encoded) == make_event(1)


def test_a_start_that_fails_while_waiting_leaves_no_broker_process(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from infra.kafka import broker as broker_module

    started: list[EmbeddedBroker] = []

    def client_breaks(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
        raise ValueError("a client that cannot read the broker's answer")

    monkeypatch.setattr(broker_module, "answers_metadata", client_breaks)
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    original_popen = broker_module.subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = original_popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(broker_module.subprocess, "Popen", recording_popen)
    with pytest.raises(ValueError, match="cannot read"):
        broker.start()
    assert len(started) == 1
    assert started[0].poll() is not None, "the broker process was left running"
