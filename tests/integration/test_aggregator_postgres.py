"""Two aggregator processes in one group on PostgreSQL, SIGKILLed at 20 seeded moments: exact.

The log is published in 20 slices while the processes run; after each slice one of the two,
chosen by a seeded generator, is SIGKILLed after a seeded delay and started again, so
partitions move back and forth between them (claims, fenced commits, reloads). At the end
each partition's published partial must equal an oracle computed straight from the topics:
the aggregation core applied once, in memory, to every record read back from that
partition's events and exposures. The log has no late records, so how the two processes
interleaved the partitions cannot change the final figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.aggregation import AggregationStore, SourceRecord
from experiments.aggregation.stats import merge_partials
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from experiments.synthetic import synthetic_log
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import encode
from streams.producer import EventPublisher

LATENESS_MS = 30 * 60 * 1000
KILLS = 20
STATS = ("n", "sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross_sum",
         "exposed", "in_progress", "late_records", "multi_variant_users", "watermark_ts")


def start_aggregator(settings: Settings, dsn: str, log_path: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
        "TANDEM_POSTGRES_DSN": dsn,
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "experiments", "aggregate", "--allowed-lateness", "30m", *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def oracle_partials(settings: Settings, experiment: str) -> dict[tuple[str, str, int], dict]:
    """Each partition's records as stored on the broker, applied in event-time order by one lone store."""
    topics = {role: settings.topic(role) for role in ("events", "exposures", "experiments")}
    records = []
    for role in ("experiments", "exposures", "events"):
        for r in read_topic(settings, topics[role]):
            ts = json.loads(r.value).get("ts", 0) if role != "experiments" else 0
            records.append((ts, SourceRecord(r.topic, r.partition, r.offset, r.key, r.value)))
    records.sort(key=lambda item: item[0])  # stable: specs first, then each topic's order at equal times
    with AggregationStore(":memory:", allowed_lateness_ms=LATENESS_MS, topics=topics) as store:
        for part in sorted({r.partition for _, r in records if r.topic != topics["experiments"]}):
            store.declare_partitions([(topics["events"], part), (topics["exposures"], part)])
        result = store.apply_batch([record for _, record in records])
        assert not result.dead_letters, result.dead_letters[:3]
        return {(r["variant"], r["metric"], r["partition"]): r for r in store.partial_records(experiment)}


def test_two_processes_sigkilled_at_random_end_equal_the_oracle(
    settings: Settings, new_postgres_database, tmp_path: Path
) -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    apply_topics(settings)
    dsn = new_postgres_database()
    log = synthetic_log(spec, users=300, days=21, seed=5)
    sent = [(EXPOSURES, x.user_id.encode(), encode(x)) for x in log.exposures]
    sent += [(EVENTS, e.user_id.encode(), encode(e)) for e in log.events]
    rng = random.Random(20261207)
    log_path = tmp_path / "aggregators.log"
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec), topic=settings.topic(EXPERIMENTS))
        publisher.flush()
        workers = [start_aggregator(settings, dsn, log_path) for _ in range(2)]
        try:
            slice_size = len(sent) // KILLS + 1
            for kill in range(KILLS):
                for topic, key, value in sent[kill * slice_size:(kill + 1) * slice_size]:
                    publisher.publish_bytes(key, value, topic=settings.topic(topic))
                publisher.flush()
                time.sleep(rng.uniform(1.5, 5.0))  # a restarted process joins the group in ~3 s
                victim = rng.randrange(2)
                workers[victim].send_signal(signal.SIGKILL)
                assert workers[victim].wait(timeout=60) == -signal.SIGKILL
                workers[victim] = start_aggregator(settings, dsn, log_path)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(timeout=60)

    # Both run to the end of the log and exit once idle.
    finals = [start_aggregator(settings, dsn, log_path, "--idle-exit", "8") for _ in range(2)]
    for final in finals:
        assert final.wait(timeout=600) == 0, log_path.read_text()[-3000:]

    expected = oracle_partials(settings, spec.id)
    assert sum(r["n"] for r in expected.values()) > 500
    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    published = {
        (r["variant"], r["metric"], r["partition"]): r for r in (json.loads(v.value) for v in newest.values())
    }
    assert published.keys() == expected.keys()
    mismatches = [
        f"{key}.{name}: {published[key][name]!r} != {expected[key][name]!r}"
        for key in sorted(expected) for name in STATS
        if published[key][name] != expected[key][name]
    ]
    assert mismatches == []
    totals = {(r["variant"], r["metric"]): r for r in merge_partials(list(published.values()))}
    oracle_totals = {(r["variant"], r["metric"]): r for r in merge_partials(list(expected.values()))}
    assert {k: [r[s] for s in STATS] for k, r in totals.items()} == {
        k: [r[s] for s in STATS] for k, r in oracle_totals.items()
    }
    import psycopg

    with psycopg.connect(dsn) as conn:  # partitions did move: every claim bumped a generation
        (claims,) = conn.execute("SELECT SUM(generation) FROM agg_parts").fetchone()
    assert claims > 4  # more claims than partitions: some partition was taken over at least once
