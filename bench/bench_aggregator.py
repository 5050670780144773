"""Aggregator throughput against a plain kafka-python consumer on the same records, same run.

    python -m bench.bench_aggregator [--users 3000 --days 21]

Prints JSON. The baseline reads the same topics with a plain consumer group and
does nothing else; the ratio is what matters on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from experiments.aggregation.aggregator import Aggregator
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from experiments.synthetic import synthetic_log
from infra.kafka.broker import EmbeddedBroker
from infra.kafka.config import consumer_config, producer_config
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
    return {
        "records": total,
        "applied": stats.applied,
        "rate_eps": round(rate),
        "raw_consumer_eps": round(raw),
        "ratio": round(rate / raw, 3) if raw else None,
        "target_ratio": 0.5,
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
