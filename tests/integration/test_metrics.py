"""Every process's ``/metrics`` (features worker, learner, serving, aggregator, archiver, console),
scraped during a short run on the embedded broker and read with ``prometheus_client``'s parser:
the figures an operator pages on are there and count."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from experiments.console import build_app as build_console_app
from experiments.console import open_console
from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec
from infra.kafka.config import producer_config
from infra.kafka.topics import DECISIONS, EVENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.producer import EventPublisher
from streams.serving import ServingConfig, build_app, build_service
from streams.worker.learner.app import learner_status_path
from streams.worker.status import read_status, status_path
from tests.helpers import T0_MS
from tests.integration.test_aggregator import publish_log as publish_experiment_log
from tests.integration.test_learner_recovery import make_log
from tests.integration.test_learner_recovery import publish as publish_log
from tests.integration.test_serving import InMemoryFeatures

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "tandem.json"


def dashboard_names(prefix: str) -> set[str]:
    """The sample names the Grafana dashboard queries whose names start with ``prefix``."""
    exprs = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(rf"\b{prefix}\w+", expr)}


@contextmanager
def worker(settings: Settings, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir),
           "TANDEM_PARTITIONS": str(settings.partitions)}
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "streams.worker", "--metrics-port", "0",
                                    "--status-interval", "0.2", "--loglevel", "info", *args],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels, through prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict, name: str) -> float:
    return sum(v for (n, _), v in scraped.items() if n == name)


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        return samples(response.read().decode())


def scrape_until(status_file: Path, process: subprocess.Popen[bytes], done, log: Path, timeout_s: float = 240):
    """Scrape the worker's /metrics (its port from its status file) until ``done(samples)``."""
    deadline, scraped = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited:\n{log.read_text(errors='replace')[-3000:]}"
        status = read_status(status_file)
        if status and status.get("pid") == process.pid and status.get("metrics_port"):
            scraped = scrape(status["metrics_port"])
            if done(scraped):
                return scraped
        time.sleep(0.3)
    raise AssertionError(f"metrics never complete: {sorted(scraped.items())[:80]}")


def test_features_worker_and_learner_expose_their_figures(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    records = make_log(600, 40, seed=9)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        publisher.publish_bytes(b"user-000", b"{not json")  # a dead letter for each worker to count
    publish_log(settings, records)
    features_log, learner_log = tmp_path / "features.log", tmp_path / "learner.log"
    with worker(settings, features_log) as features, worker(settings, learner_log, "--role", "learner") as learner:
        events = sum(1 for r in records if not hasattr(r, "decision_id")) + 1

        def features_done(s: dict) -> bool:
            return (value(s, "tandem_features_events_total", outcome="processed") >= events
                    and value(s, "tandem_features_freshness_seconds_count") > 0
                    and any(n == "tandem_features_consumer_lag" for n, _ in s))

        scraped = features_scraped = scrape_until(status_path(settings), features, features_done, features_log)
        assert value(scraped, "tandem_features_events_total", outcome="accepted") > 0
        assert value(scraped, "tandem_features_events_total", outcome="invalid") == 1
        assert value(scraped, "tandem_features_dead_letters_total") == 1
        assert value(scraped, "tandem_features_rows_written_total") > 0
        assert value(scraped, "tandem_features_flushes_total") > 0
        assert value(scraped, "tandem_features_freshness_seconds_bucket", le="+Inf") == value(
            scraped, "tandem_features_freshness_seconds_count")
        lag_partitions = {dict(labels)["partition"] for n, labels in scraped if n == "tandem_features_consumer_lag"}
        assert lag_partitions == {str(p) for p in range(settings.partitions)}

        def learner_done(s: dict) -> bool:
            return (value(s, "tandem_learner_updates_total") > 0 and value(s, "tandem_learner_checkpoints_total") > 0
                    and any(n == "tandem_learner_consumer_lag" for n, _ in s))

        scraped = scrape_until(learner_status_path(settings), learner, learner_done, learner_log)
        assert value(scraped, "tandem_learner_records_total", outcome="applied") > 0
        assert value(scraped, "tandem_learner_windows_closed_total") > 0
        assert total(scraped, "tandem_learner_policy_version") > 0
        assert {dict(labels)["topic"] for n, labels in scraped if n == "tandem_learner_consumer_lag"} == {
            settings.topic(DECISIONS), settings.topic(EVENTS)}
        assert dashboard_names("tandem_learner_") <= {n for n, _ in scraped}, "the dashboard queries a name not exposed"
        assert dashboard_names("tandem_features_") <= {n for n, _ in features_scraped}


def test_serving_exposes_its_figures(settings: Settings) -> None:
    async def run() -> dict:
        service = build_service(settings, features=InMemoryFeatures(), config=ServingConfig())
        service.start()
        try:
            async with TestClient(TestServer(build_app(service))) as client:
                for number in range(20):
                    response = await client.post("/recommend", json={"user_id": f"user-{number}"})
                    assert response.status == 200
                await client.post("/recommend", data=b"{not json")
                deadline = time.monotonic() + 60
                while service.log.acknowledged["decisions"] < 20 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return samples(await (await client.get("/metrics")).text())
        finally:
            await asyncio.to_thread(service.close, 5.0)

    apply_topics(settings)
    scraped: dict[Any, float] = asyncio.run(run())
    assert value(scraped, "tandem_serving_requests_total", route="/recommend", status="200") == 20
    assert value(scraped, "tandem_serving_requests_total", route="/recommend", status="400") == 1
    assert value(scraped, "tandem_serving_recommend_latency_seconds_count") == 21
    assert value(scraped, "tandem_serving_records_logged_total", topic="decisions") == 20
    assert value(scraped, "tandem_serving_records_overflowed_total", topic="decisions") == 0
    assert value(scraped, "tandem_serving_policy_version", policy="popularity") == 0
    assert dashboard_names("tandem_serving_") <= {n for n, _ in scraped}, "the dashboard queries a name not exposed"


@contextmanager
def tandem(settings: Settings, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``tandem <args> --metrics-port 0`` on the test's broker, prefix and state directory."""
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir)}
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "infra.cli", *args, "--metrics-port", "0"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def scrape_logged(name: str, process: subprocess.Popen[bytes], done, log: Path, timeout_s: float = 240) -> dict:
    """Scrape ``/metrics`` at the port the process logged (``<name> /metrics on ...``) until ``done(samples)``."""
    deadline, scraped = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}"
        found = re.search(rf"{name} /metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text(errors="replace"))
        if found:
            scraped = scrape(int(found.group(1)))
            if done(scraped):
                return scraped
        time.sleep(0.3)
    raise AssertionError(f"metrics never complete: {sorted(scraped.items())[:80]}")


def lag_labels(scraped: dict, name: str) -> set[tuple[str, str]]:
    return {(dict(labels)["topic"], dict(labels)["partition"]) for n, labels in scraped if n == name}


def test_aggregator_and_archiver_expose_their_figures(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    spec = load_spec(DEMO_SPEC_PATH)
    sent = publish_experiment_log(settings, spec, users=150, days=12)  # three bad records among them
    events = sum(1 for role, _, _ in sent if role == "events")
    exposures = sum(1 for role, _, _ in sent if role == "exposures")
    every_partition = {str(p) for p in range(settings.partitions)}
    aggregator_log, archiver_log = tmp_path / "aggregator.log", tmp_path / "archiver.log"
    with tandem(settings, aggregator_log, "experiments", "aggregate", "--allowed-lateness", "30m") as aggregator, \
            tandem(settings, archiver_log, "archive", "run", "--flush-interval", "0.3") as archiver:

        def aggregator_done(s: dict) -> bool:
            return (value(s, "tandem_aggregator_records_total", topic=settings.topic(EVENTS)) >= events
                    and value(s, "tandem_aggregator_records_total", topic=settings.topic(EXPOSURES)) >= exposures
                    and total(s, "tandem_aggregator_consumer_lag") == 0
                    and len(lag_labels(s, "tandem_aggregator_consumer_lag")) == 2 * settings.partitions)

        scraped = scrape_logged("aggregator", aggregator, aggregator_done, aggregator_log)
        assert value(scraped, "tandem_aggregator_records_applied_total") >= events + exposures
        assert value(scraped, "tandem_aggregator_dead_letters_total") == 3
        assert value(scraped, "tandem_aggregator_window_closes_total", experiment=spec.id) > 0
        assert value(scraped, "tandem_aggregator_batches_total") > 0
        assert value(scraped, "tandem_aggregator_metric_records_total") > 0
        assert scraped[("tandem_aggregator_late_records_total", (("experiment", spec.id),))] == 0  # none in this log
        assert {p for _, p in lag_labels(scraped, "tandem_aggregator_consumer_lag")} == every_partition
        assert dashboard_names("tandem_aggregator_") <= {n for n, _ in scraped}, "a name the dashboard queries lacks"

        def archiver_done(s: dict) -> bool:
            return (value(s, "tandem_archiver_records_total", topic=settings.topic(EVENTS)) >= events
                    and value(s, "tandem_archiver_records_pending") == 0
                    and value(s, "tandem_archiver_files_written_total") > 0
                    and len(lag_labels(s, "tandem_archiver_consumer_lag")) > 0)

        scraped = scrape_logged("archiver", archiver, archiver_done, archiver_log)
        assert value(scraped, "tandem_archiver_records_archived_total", topic=settings.topic(EVENTS)) == events - 2
        assert value(scraped, "tandem_archiver_records_archived_total", topic=settings.topic(EXPOSURES)) == exposures
        assert value(scraped, "tandem_archiver_dead_letters_total") == 2  # the two bad events
        assert value(scraped, "tandem_archiver_batches_total") > 0
        assert dashboard_names("tandem_archiver_") <= {n for n, _ in scraped}, "a name the dashboard queries lacks"


def test_console_exposes_its_figures(settings: Settings) -> None:
    token = "metrics-test-token"
    auth = {"Authorization": f"Bearer {token}"}
    apply_topics(settings)
    spec = load_spec(DEMO_SPEC_PATH)
    publish_spec(settings, apply_spec(None, spec, who="owner", at=T0_MS))

    async def run() -> str:
        with open_console(settings, monitor=False) as running:
            async with TestClient(TestServer(build_console_app(running.console, token=SecretStr(token)))) as client:
                assert (await client.post(f"/api/experiments/{spec.id}/stop", json={})).status == 401
                assert (await client.post("/api/experiments/nope/stop", json={}, headers=auth)).status == 404
                assert (await client.post(f"/api/experiments/{spec.id}/decide", json={}, headers=auth)).status == 409
                assert (await client.post("/api/experiments", json={"spec": {}}, headers=auth)).status == 422
                stopped = await client.post(f"/api/experiments/{spec.id}/stop", json={"why": "x"}, headers=auth)
                assert stopped.status == 200, await stopped.text()
                assert (await client.get("/api/experiments")).status == 200
                return await (await client.get("/metrics")).text()

    text = asyncio.run(run())
    assert token not in text
    scraped = samples(text)
    assert value(scraped, "tandem_console_requests_total", route="/api/experiments", status="200") == 1
    assert value(scraped, "tandem_console_requests_total", route="/api/experiments/{id}/stop", status="200") == 1
    for status in ("401", "404", "409", "422"):
        assert value(scraped, "tandem_console_writes_refused_total", status=status) == 1, status
    assert value(scraped, "tandem_console_experiments", status="stopped") == 1
    assert value(scraped, "tandem_console_experiments", status="running") == 0
    assert value(scraped, "tandem_console_automatic_stops_total") == 0  # --no-monitor here
    assert dashboard_names("tandem_console_") <= {n for n, _ in scraped}, "the dashboard queries a name not exposed"
