"""Stream = batch on the real broker: the aggregator and the archiver over one generated log.

Both workers read the same topics in their own groups and run to the end. The batch path
then recomputes every configured metric from the archive, cut where the stream's records
were (their watermark minus the allowed lateness), on DuckDB and on Spark: both must equal
the stream (n exactly, sums to 1e-9 relative) and each other exactly.

A metric added on simulated day 5 (``tandem experiments add-metric``: a new spec version on the
experiments topic, the metric's source batch) is accepted by the aggregator, which leaves it to
the batch path, and is reported by ``tandem report`` (with its source and the event time it
covers) and ``tandem experiments recompute`` with values equal to a from-scratch batch
computation of a spec that had it from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.batch.archive import Archive
from experiments.batch.check import check
from experiments.batch.engines import DuckDBEngine, SparkEngine, spark_session
from experiments.batch.recompute import recompute
from experiments.batch.stream import read_stream_figures
from experiments.lifecycle import apply_spec, publish_spec, read_specs, version
from experiments.report.render import when
from experiments.spec import DEMO_SPEC_PATH, load_spec, parse_spec, spec_to_json
from experiments.stats.inputs import parse_input
from experiments.synthetic import DAY_MS, synthetic_log
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DEAD_LETTERS, EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, apply_topics
from infra.settings import Settings
from streams.events import encode
from streams.producer import EventPublisher

LATENESS_MS = 30 * 60 * 1000
ADDED_METRIC = {
    "name": "genres_3d", "role": "success", "kind": "mean", "direction": "increase",
    "measure": "distinct_genres", "window": {"delay": "1d", "length": "3d"}, "covariate": {"length": "2d"},
}


def tandem(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
    }
    done = subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert not check or done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def publish(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for role, key, value in records:
            publisher.publish_bytes(key, value, topic=settings.topic(role))


def run_workers(settings: Settings) -> None:
    """The aggregator and the archiver, together, each to the end of the topics."""
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir)}
    commands = [
        ["experiments", "aggregate", "--allowed-lateness", "30m", "--idle-exit", "5"],
        ["archive", "run", "--flush-interval", "1", "--idle-exit", "4"],
    ]
    workers = [subprocess.Popen([sys.executable, "-m", "infra.cli", *c], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for c in commands]
    for worker in workers:
        output, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, output.decode()[-3000:]


@pytest.fixture(scope="module")
def spark() -> Any:
    return spark_session("local[2]")


@pytest.mark.timeout(1200)
def test_stream_equals_duckdb_equals_spark_and_an_added_metric_equals_from_scratch(
    settings: Settings, tmp_path: Path, spark: Any
) -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    apply_topics(settings)
    log = synthetic_log(spec, users=300, days=16, seed=21)
    timed = sorted(
        [(x.ts, "exposures", x.user_id.encode(), encode(x)) for x in log.exposures]
        + [(e.ts, "events", e.user_id.encode(), encode(e)) for e in log.events]
    )
    day5 = spec.start + 5 * DAY_MS
    publish_spec(settings, apply_spec(None, spec, who="owner", at=spec.start))  # version 1
    publish(settings, [(role, key, value) for ts, role, key, value in timed if ts < day5])
    run_workers(settings)

    # Day 5: an owner adds a metric the stream never had.
    metric_file = tmp_path / "genres.yaml"
    metric_file.write_text(json.dumps(ADDED_METRIC))
    added = tandem(settings, "experiments", "add-metric", spec.id, str(metric_file))
    assert "spec version 2 adds metric genres_3d" in added.stdout
    on_topic = read_specs(settings)[spec.id]
    assert (version(on_topic), on_topic.status, on_topic.history[-1].why) == (
        2, "running", "metric genres_3d added (source batch)")
    assert [m.name for m in on_topic.batch_metrics] == ["genres_3d"] and on_topic.streamed().metrics == spec.metrics

    publish(settings, [(role, key, value) for ts, role, key, value in timed if ts >= day5])
    run_workers(settings)

    # The aggregator took version 2 (no dead letter) and left the batch metric to the batch path.
    rejected = [json.loads(r.value) for r in read_topic(settings, settings.topic(DEAD_LETTERS))
                if r.value is not None and json.loads(r.value)["source_topic"] == settings.topic(EXPERIMENTS)]
    assert rejected == []
    streamed = {json.loads(r.value)["metric"] for r in read_topic(settings, settings.topic(EXPERIMENT_METRICS))
                if r.value is not None}
    assert streamed == {m.name for m in spec.metrics}

    # Stream = DuckDB = Spark on every configured metric and variant.
    archive = Archive(str(settings.state_dir / "archive"))
    figures = read_stream_figures(settings, spec.id)
    assert {f.stats.n > 50 for f in figures.values()} == {True}, figures
    result = check(spec, figures, archive, engines=[DuckDBEngine(), SparkEngine()], allowed_lateness_ms=LATENESS_MS)
    assert result.differences == (), "\n".join(result.lines())
    assert result.equal and [m.metric for m in result.metrics] == [m.name for m in spec.metrics]
    # The stream's cut (one per input partition: each partition closes windows on its own watermark).
    cut = next(iter(figures.values())).closed_upto(LATENESS_MS)
    on_duckdb = recompute(spec, archive, engine=DuckDBEngine(), closed_upto=cut)
    on_spark = recompute(spec, archive, engine=SparkEngine(), closed_upto=cut)
    assert on_duckdb.stats == tuple(s for s in on_spark.stats)  # identical, not merely close
    # The command prints stream = batch per metric and exits 0.
    printed = tandem(settings, "experiments", "check", spec.id, "--engine", "duckdb")
    assert [line.split(":")[0] for line in printed.stdout.splitlines() if "stream = batch" in line] == [
        m.name for m in spec.metrics
    ]

    # The added metric, reported by recompute, equals a from-scratch spec that always had it.
    out = tmp_path / "stats.json"
    reported = tandem(settings, "experiments", "recompute", spec.id, "--metric", "genres_3d", "--out", str(out))
    assert "genres_3d: source batch (duckdb), added in spec version 2" in reported.stderr
    written = json.loads(out.read_text())
    parse_input(written)  # the `tandem stats` input format
    scratch = parse_spec({**json.loads(spec_to_json(spec)), "metrics": [ADDED_METRIC]})
    expected = recompute(scratch, archive, engine=DuckDBEngine(), allowed_lateness_ms=LATENESS_MS)
    assert [m["name"] for m in written["metrics"]] == ["genres_3d"]
    by_variant = {row["name"]: row for row in written["metrics"][0]["variants"]}
    for stats in expected.stats:
        row = by_variant[stats.variant]
        assert row["n"] == stats.n > 50
        assert (row["sum"], row["sum_sq"], row["pre_sum"], row["pre_sum_sq"], row["pre_cross_sum"]) == (
            stats.sum, stats.sum_sq, stats.pre_sum, stats.pre_sum_sq, stats.pre_cross_sum)

    # The owner's report shows it apart from the stream's metrics: source batch, the version that
    # added it, the event time covered, and the from-scratch values.
    report = tandem(settings, "report", spec.id, "--out", str(tmp_path / "report"))
    assert "genres_3d (mean, success, higher is better" in report.stdout
    assert "[source batch, added in spec version 2]" in report.stdout
    covers = f"covers event time {when(expected.covers_from)} to {when(expected.closed_upto)}"
    assert "source batch (duckdb over the archive" in report.stdout and covers in report.stdout
    adhoc = json.loads((tmp_path / "report" / f"{spec.id}.json").read_text())["adhoc"]
    assert (adhoc["source"], adhoc["added_in"], adhoc["covers_from"], adhoc["closed_upto"]) == (
        "batch", {"genres_3d": 2}, expected.covers_from, expected.closed_upto)
    (reported,) = adhoc["metrics"]
    shown = {row["name"]: row for row in reported["variants"]}
    for stats in expected.stats:
        assert shown[stats.variant]["n"] == stats.n
        assert shown[stats.variant]["mean"] == pytest.approx(stats.sum / stats.n, rel=1e-12)
    # The stream's metrics are reported as before, from experiment-metrics.
    stream_json = json.loads((tmp_path / "report" / f"{spec.id}.json").read_text())
    assert [m["name"] for m in stream_json["metrics"]] == [m.name for m in spec.metrics]
