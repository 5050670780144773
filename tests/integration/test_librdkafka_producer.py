"""The serving log's librdkafka producer against the embedded broker: placement, outcomes, close."""

from __future__ import annotations

import threading
from pathlib import Path

from infra.kafka.broker import EmbeddedBroker
from infra.kafka.config import librdkafka_producer_config, producer_config
from infra.kafka.librdkafka import LibrdkafkaProducer
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EVENTS, apply_topics
from infra.settings import Settings, load_settings


class Outcomes:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked = 0
        self.failed: list[BaseException] = []

    def ack(self, _meta: object) -> None:
        with self.lock:
            self.acked += 1

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.failed.append(error)


def test_keys_land_on_the_partitions_kafka_python_would_choose(settings: Settings) -> None:
    """A user's decisions must share partitions with the user's events, which kafka-python writes."""
    apply_topics(settings)
    keys = [f"user-{i}".encode() for i in range(300)]
    producer = LibrdkafkaProducer(librdkafka_producer_config(settings))
    outcomes = Outcomes()
    for key in keys:
        producer.send(settings.topic(DECISIONS), key=key, value=b"{}").add_callback(
            outcomes.ack).add_errback(outcomes.fail)
    producer.close(timeout=30)
    assert (outcomes.acked, outcomes.failed) == (300, [])
    with KafkaPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for key in keys:
            publisher.publish_bytes(key, b"{}")
    placed = {r.key: r.partition for r in read_topic(settings, settings.topic(DECISIONS))}
    by_kafka_python = {r.key: r.partition for r in read_topic(settings, settings.topic(EVENTS))}
    assert len(placed) == 300 and len(set(placed.values())) == settings.partitions
    assert placed == by_kafka_python


def test_a_callback_added_after_the_outcome_still_runs(settings: Settings) -> None:
    apply_topics(settings)
    producer = LibrdkafkaProducer(librdkafka_producer_config(settings, **{"linger.ms": 0}))
    delivery = producer.send(settings.topic(DECISIONS), key=b"u", value=b"{}")
    assert producer.flush(10) == 0
    outcomes = Outcomes()
    delivery.add_callback(outcomes.ack).add_errback(outcomes.fail)
    producer.close(timeout=1)
    assert (outcomes.acked, outcomes.failed) == (1, [])


def test_close_with_the_broker_away_fails_every_record_once_its_timeout_is_over(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        settings = load_settings({}, bootstrap_servers=broker.bootstrap, topic_prefix="away.",
                                 state_dir=tmp_path / "state")
        apply_topics(settings)
    finally:
        broker.stop()
    producer = LibrdkafkaProducer(librdkafka_producer_config(settings))
    outcomes = Outcomes()
    for i in range(20):
        producer.send(settings.topic(DECISIONS), key=f"u{i}".encode(), value=b"{}").add_callback(
            outcomes.ack).add_errback(outcomes.fail)
    # send returned without an outcome: it never waits for the broker (records expire after 5 min)
    assert (outcomes.acked, outcomes.failed) == (0, [])
    # close(timeout=1) must not wait out librdkafka's message timeout; a minute is far beyond 1 s
    closing = threading.Thread(target=producer.close, kwargs={"timeout": 1.0})
    closing.start()
    closing.join(timeout=60)
    assert not closing.is_alive(), "close did not return"
    assert outcomes.acked == 0 and len(outcomes.failed) == 20
    assert all("Purged" in str(error) for error in outcomes.failed), outcomes.failed[:1]
