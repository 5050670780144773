"""Aggregator throughput against a plain kafka-python consumer on the same records, same run.

    python -m bench.bench_aggregator [--users 3000 --days 21]

Prints JSON. The baseline reads the same topics with a plain consumer group and
does nothing else; the ratio is what matters on a shared, noisy machine.

``store_alone_eps`` is the aggregator's store applying the same records, read into memory
first, in batches of the aggregator's size: the aggregator without Kafka. The aggregator pays
kafka-python's parsing (the raw consumer's whole cost) and then the store, so its ratio is
about ``store_alone_ratio / (1 + store_alone_ratio)``: a ratio of 0.5 needs the store alone to
be at least as fast as the raw consumer (``store_alone_ratio`` >= 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from experiments.aggregation import SourceRecord
from experiments.aggregation.aggregator import (
    DEFAULT_ALLOWED_LATENESS_MS,
    MAX_POLL_RECORDS,
    Aggregator,
    open_store,
    settle_garbage,
)
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from experiments.synthetic import synthetic_log
from infra.kafka.broker import EmbeddedBroker
from infra.kafka.config import consumer_config, producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import EVENTS, EXPERIMENTS, EXPOSURES, apply_topics
from infra.settings import Settings, load_settings
from streams.producer import EventPublisher

SPEC = DEMO_SPEC_PATH


def publish(settings: Settings, *, users: int, days: int) -> int:
    spec = load_spec(SPEC)
    log = synthetic_log(spec, users=users, days=days, seed=3)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec), topic=settings.topic(EXPERIMENTS))
        for exposure in log.exposures:
            publisher.publish(exposure, topic=settings.topic(EXPOSURES))
        for event in log.events:
            publisher.publish(event)
    return len(log.exposures) + len(log.events)


def raw_consumer_rate(settings: Settings, total: int) -> float:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic(EVENTS),
        settings.topic(EXPOSURES),
        **consumer_config(settings, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}", max_poll_records=5000),
    )
    seen, first = 0, None
    deadline = time.monotonic() + 300
    try:
        while seen < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                first = first or time.monotonic()
                seen += len(records)
        elapsed = time.monotonic() - (first or time.monotonic())
    finally:
        consumer.close()
    return seen / elapsed if elapsed > 0 else 0.0


def store_alone_rate(settings: Settings) -> float:
    """Records/s of the aggregator's store on every record of the input topics, held in memory, in
    batches of the aggregator's size, its garbage settled after each as the aggregator does."""
    records = [
        SourceRecord(r.topic, r.partition, r.offset, r.key, r.value)
        for topic in (EXPERIMENTS, EVENTS, EXPOSURES) for r in read_topic(settings, settings.topic(topic))
    ]
    specs = [r for r in records if r.topic == settings.topic(EXPERIMENTS)]
    inputs = [r for r in records if r.topic != settings.topic(EXPERIMENTS)]
    store = open_store(settings, allowed_lateness_ms=DEFAULT_ALLOWED_LATENESS_MS)
    try:
        store.apply_batch(specs)
        store.declare_partitions({(r.topic, r.partition) for r in inputs})  # as the aggregator's assignment does
        began = time.perf_counter()
        for batches, start in enumerate(range(0, len(inputs), MAX_POLL_RECORDS), start=1):
            store.apply_batch(inputs[start:start + MAX_POLL_RECORDS])
            settle_garbage(batches)
        elapsed = time.perf_counter() - began
    finally:
        gc.unfreeze()
        store.close()
    return len(inputs) / elapsed


def run(*, users: int = 3000, days: int = 21) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tandem-bench-agg-") as workdir, EmbeddedBroker(
        log_path=Path(workdir) / "broker.log"
    ) as broker:
        settings = load_settings({}, bootstrap_servers=broker.bootstrap, state_dir=Path(workdir) / "state")
        apply_topics(settings)
        total = publish(settings, users=users, days=days)
        raw = raw_consumer_rate(settings, total)
        stats = Aggregator(settings=settings).run(idle_exit_s=3.0)
        busy = (stats.last_batch_at or 0.0) - (stats.first_batch_at or 0.0)
        rate = stats.applied / busy if busy > 0 else 0.0
        alone = store_alone_rate(load_settings(
            {}, bootstrap_servers=broker.bootstrap, state_dir=Path(workdir) / "store-alone"
        ))
    return {
        "records": total,
        "applied": stats.applied,
        "rate_eps": round(rate),
        "raw_consumer_eps": round(raw),
        "ratio": round(rate / raw, 3) if raw else None,
        "target_ratio": 0.5,
        "store_alone_eps": round(alone),
        "store_alone_ratio": round(alone / raw, 3) if raw else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=21)
    args = parser.parse_args(argv)
    json.dump(run(users=args.users, days=args.days), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
