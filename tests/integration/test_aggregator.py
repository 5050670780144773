"""The aggregation worker on the real broker: exact figures, through SIGKILLs at any point.

The oracle is the aggregation core applied once, in memory, to the same log
(the core itself is checked against a brute-force recomputation of every metric
in tests/unit/experiments). The log has no late records, so the interleaving of
partitions at the consumer cannot change the final figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.aggregation import AggregationStore, SourceRecord
from experiments.aggregation.aggregator import group_id as aggregator_group
from experiments.aggregation.stats import merge_partials
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec, spec_to_json
from experiments.synthetic import synthetic_log
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import DEAD_LETTERS, EVENTS, EXPERIMENT_METRICS, apply_topics
from infra.settings import Settings
from streams.events import DeadLetter, Exposure, decode, encode
from streams.producer import EventPublisher

SPEC_PATH = DEMO_SPEC_PATH
LATENESS_MS = 30 * 60 * 1000


def publish_log(settings: Settings, spec: ExperimentSpec, *, users: int, days: int) -> list[tuple[str, bytes, bytes]]:
    """Publish spec, exposures, events and three bad records; return what was published, in order."""
    log = synthetic_log(spec, users=users, days=days, seed=11)
    bad_exposure = Exposure(
        exposure_id="x-ghost", experiment="no-such-experiment", variant="a", user_id="u", ts=spec.start
    )
    sent: list[tuple[str, bytes, bytes]] = [("experiments", spec.id.encode(), spec_to_json(spec))]
    sent += [("exposures", x.user_id.encode(), encode(x)) for x in log.exposures]
    events = [(e.user_id.encode(), encode(e)) for e in log.events]
    middle = len(events) // 2
    events[middle:middle] = [(b"user-00001", b"{not json"), (b"user-00002", b'{"event_id": "e-typo", "user_id": 7}')]
    sent += [("events", key, value) for key, value in events]
    sent.append(("exposures", b"u", encode(bad_exposure)))
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for role, key, value in sent:
            publisher.publish_bytes(key, value, topic=settings.topic(role))
    return sent


def oracle_records(settings: Settings, sent: list[tuple[str, bytes, bytes]], experiment: str) -> list[dict]:
    """The core on the log merged in event time (as a single consumer of every partition would see it)."""
    topics = {role: settings.topic(role) for role in ("events", "exposures", "experiments")}
    with AggregationStore(":memory:", allowed_lateness_ms=LATENESS_MS, topics=topics) as store:
        timed = []
        for role, key, value in sent:
            try:
                ts = json.loads(value).get("ts", 0) if role != "experiments" else 0
            except ValueError:
                ts = 0
            timed.append((ts, role, key, value))
        timed.sort(key=lambda item: item[0])
        offsets: dict[str, int] = {}
        records = []
        for _, role, key, value in timed:
            offsets[role] = offsets.get(role, -1) + 1
            records.append(SourceRecord(topics[role], 0, offsets[role], key, value))
        result = store.apply_batch(records)
        assert len(result.dead_letters) == 3
        return store.metric_records(experiment)


def without_id(records) -> dict[str, dict]:
    """Records by key, without what depends on how records were spread over partitions."""
    return {
        f"{r['experiment']}/{r['variant']}/{r['metric']}": {
            k: v for k, v in r.items() if k not in ("record_id", "watermark_ts")
        }
        for r in records
    }


def partition_watermarks(settings: Settings) -> dict[int, int]:
    """Per partition number: the minimum over its input partitions (events, exposures) of the newest
    event time there."""
    newest: dict[tuple[str, int], int] = {}
    for role in ("events", "exposures"):
        for record in read_topic(settings, settings.topic(role)):
            try:
                ts = json.loads(record.value)["ts"]
            except (ValueError, KeyError):
                continue
            key = (record.topic, record.partition)
            newest[key] = max(newest.get(key, 0), ts)
    parts = {partition for _, partition in newest}
    return {p: min(ts for (_, partition), ts in newest.items() if partition == p) for p in parts}


def differences(actual: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    found = [f"{key}: missing" for key in expected.keys() - actual.keys()]
    found += [f"{key}: unexpected" for key in actual.keys() - expected.keys()]
    for key in expected.keys() & actual.keys():
        found += [
            f"{key}.{name}: {actual[key].get(name)!r} != expected {value!r}"
            for name, value in expected[key].items()
            if actual[key].get(name) != value
        ]
    return sorted(found)


def start_aggregator(settings: Settings, log_path: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "experiments", "aggregate", "--allowed-lateness", "30m", *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def applied_offsets(settings: Settings) -> int:
    import sqlite3

    path = settings.state_dir / "experiments.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COALESCE(SUM(next_offset), 0) FROM agg_offsets").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@pytest.mark.timeout(1800)
def test_metrics_equal_the_oracle_through_sigkills(settings: Settings, tmp_path: Path) -> None:
    spec = load_spec(SPEC_PATH)
    apply_topics(settings)
    sent = publish_log(settings, spec, users=1500, days=21)
    expected = without_id(oracle_records(settings, sent, spec.id))
    assert expected and all(r["n"] > 100 for r in expected.values()), expected
    log_path = tmp_path / "aggregator.log"

    # 1. It kills itself right after its third database commit: state and offsets are stored,
    #    nothing is published and no Kafka offset is committed yet.
    crashed = start_aggregator(settings, log_path, "--crash-after-commits", "3")
    assert crashed.wait(timeout=300) == -signal.SIGKILL, log_path.read_text()
    after_first = applied_offsets(settings)
    assert after_first > 0

    # 2. SIGKILLed from outside at arbitrary points while it works.
    for _ in range(2):
        worker = start_aggregator(settings, log_path)
        try:
            deadline = time.monotonic() + 300
            progress = applied_offsets(settings)
            while applied_offsets(settings) <= progress and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            worker.kill()
            worker.wait(timeout=60)
    assert applied_offsets(settings) > after_first

    # 3. Runs to the end of the log and exits when idle.
    final = start_aggregator(settings, log_path, "--idle-exit", "6")
    assert final.wait(timeout=900) == 0, log_path.read_text()[-3000:]

    # Each partition's partial carries that partition's watermark; readers sum the partials.
    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    published = [json.loads(r.value) for r in newest.values()]
    assert {(r["partition"], r["watermark_ts"]) for r in published} == set(partition_watermarks(settings).items())
    assert differences(without_id(merge_partials(published)), expected) == []

    database = subprocess.run(
        [sys.executable, "-m", "infra.cli", "experiments", "metrics", spec.id],
        env={
            **os.environ,
            "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
            "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        },
        capture_output=True, text=True, timeout=300, check=True,
    )
    assert differences(without_id(json.loads(line) for line in database.stdout.splitlines()), expected) == []

    letters = {
        letter.dead_letter_id: letter
        for letter in (decode(r.value, DeadLetter) for r in read_topic(settings, settings.topic(DEAD_LETTERS)))
        if letter.stage == "experiments.aggregation"
    }
    reasons = sorted(letter.error for letter in letters.values())
    assert len(reasons) == 3, reasons
    assert any("malformed JSON" in reason for reason in reasons)
    assert any("user_id: Input should be a valid string" in reason for reason in reasons)
    assert any("unknown experiment" in reason for reason in reasons)
    assert aggregator_group(settings).startswith(settings.topic_prefix)

    # The experiment owner's report, from the topics alone.
    report_dir = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "-m", "infra.cli", "report", spec.id, "--out", str(report_dir)],
        env={
            **os.environ,
            "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
            "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        },
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert report.returncode == 0, report.stderr
    assert "plays_7d" in report.stdout and "retention_d7" in report.stdout
    written = json.loads((report_dir / f"{spec.id}.json").read_text())
    assert written["decision"]["verdict"] in ("ship", "do_not_ship", "inconclusive")
    assert written["srm"]["passed"] is True
    n_by_metric = {
        (m["name"], row["name"]): row["n"] for m in written["metrics"] for row in m["variants"]
    }
    assert n_by_metric == {(r["metric"], r["variant"]): r["n"] for r in expected.values()}
    for png in (f"{spec.id}-lift.png", f"{spec.id}-lift-over-time.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
