"""Benchmark of the features pipeline on the embedded broker; prints JSON, asserts nothing.

On the same pre-published events (default 100k over 2k users) it measures, each in a
process of its own and from its first record to its last (start-up and group joins excluded):

- ``raw_consumer_eps``: a plain kafka-python consumer that only reads them;
- ``faust_noop_eps``: a Faust agent (raw bytes, same app settings) that only counts them;
- ``rate_eps``: the features worker (``python -m streams.worker``): decode, state, table,
  changelog, Feast online + Parquet; the end is when the last record's row is written;
- ``rate_eps_changelog_batches``: the same with producer batching left on, which is faster
  but makes the embedded broker's end offsets wrong (see ``streams.worker.app``);

and then, on a fresh worker, freshness (publish to readable online, ms) at a fixed offered
load (default 2,000 events/s), ``freshness_p50_ms`` and ``freshness_p99_ms``; and again at
that load scaled to this machine, ``freshness_scaled_*``: the offered load times the counting
agent's rate here over ``REFERENCE_FAUST_NOOP_EPS``, the ~16k events/s the features issue
measured it at. A fixed load is a different share of a slower machine: at 2,000 events/s a
machine whose pipeline sustains little more than that only measures its queue
(``freshness_offered_vs_pipeline`` near or above 1). So freshness is also measured at half and
at 0.9 of the pipeline's own rate measured just before (``freshness_half_of_max_*``,
``freshness_0p9_of_max_*``). Each load reports p50, p99 and p99.9 (``*_p999_ms``); the fixed
load also where the time goes, per record (``freshness_stage_<stage>_p50_ms`` / ``_p99_ms``:
``to_agent`` publish to the agent, ``in_batch`` waiting in the batch, ``to_write`` sealed to the
write's start, ``write`` the writer process's online write).

    python -m bench.bench_features [--events 100000] [--users 2000] [--offered-eps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra.kafka.topics import EVENTS

ROOT = Path(__file__).resolve().parent.parent
T0_MS = 1_767_225_600_000
#: The counting Faust agent's rate on the machine the freshness target was set on (events/s).
REFERENCE_FAUST_NOOP_EPS = 16_000.0
TYPES = ["play"] * 6 + ["skip"] * 3 + ["session_start"]


def event_bytes(i: int, rng: random.Random, users: int, span_ms: int, n: int) -> tuple[bytes, bytes]:
    user = f"user-{rng.randrange(users)}"
    kind = rng.choice(TYPES)
    record: dict[str, Any] = {"event_id": uuid.uuid4().hex, "user_id": user,
                              "ts": T0_MS + span_ms * i // max(n, 1), "type": kind,
                              "ms_played": rng.randrange(0, 240_000)}
    if kind != "session_start":
        record["item_id"] = f"item-{rng.randrange(5000)}"
        record["genre"] = rng.choice(["pop", "rock", "jazz", "latin", "polka"])
    return user.encode(), json.dumps(record, separators=(",", ":")).encode()


def publish(settings: Any, n: int, users: int, *, rate_eps: float | None = None, seed: int = 7,
            start: int = 0) -> None:
    from kafka import KafkaProducer

    from infra.kafka.config import producer_config

    producer = KafkaProducer(**producer_config(settings))
    rng = random.Random(seed)
    topic = settings.topic(EVENTS)
    began = time.monotonic()
    span = 7 * 24 * 3600 * 1000
    for i in range(n):
        key, value = event_bytes(start + i, rng, users, span, start + n)
        producer.send(topic, key=key, value=value)
        if rate_eps and i % 20 == 19:
            time.sleep(max(0.0, began + (i + 1) / rate_eps - time.monotonic()))
    producer.flush()
    producer.close()


def raw_consumer_eps(settings: Any, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    from infra.kafka.config import consumer_config

    consumer = KafkaConsumer(**consumer_config(settings, group_id=None))
    tps = [TopicPartition(settings.topic(EVENTS), p) for p in range(settings.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen, first = 0, None
    deadline = time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200, max_records=5000).values():
            if first is None:
                first = time.perf_counter()
            seen += len(records)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed > 0 else float("nan")


def noop_worker(settings: Any, expect: int, out: Path) -> None:
    """A Faust app that only counts the events (the framework's floor); writes its timing."""
    import faust

    from infra.kafka.config import faust_config

    app = faust.App(f"{settings.topic_prefix}bench-noop", datadir=str(out.parent / "noop"),
                    key_serializer="raw", value_serializer="raw", **faust_config(settings))
    topic = app.topic(settings.topic(EVENTS), key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": None}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for _value in stream:
            if seen["first"] is None:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] == expect:
                out.write_text(json.dumps({"events": expect, "seconds": time.perf_counter() - seen["first"]}))

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


def _env(settings: Any) -> dict[str, str]:
    return {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
            "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir),
            "TANDEM_PARTITIONS": str(settings.partitions)}


@contextmanager
def process(args: list[str], settings: Any, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=_env(settings), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def faust_noop_eps(settings: Any, n: int, work: Path) -> float:
    out = work / "noop.json"
    with process([str(Path(__file__).resolve()), "--noop-worker", "--events", str(n), "--out", str(out)],
                 settings, work / "noop.log") as proc:
        deadline = time.monotonic() + 600
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    result = json.loads(out.read_text())
    return result["events"] / result["seconds"]


def _status(settings: Any) -> dict[str, Any] | None:
    from streams.worker.status import read_status, status_path

    return read_status(status_path(settings))


def pipeline_eps(settings: Any, n: int, work: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    """Events/s from the first record processed to the last record's row in the online store."""
    args = ["-m", "streams.worker", "--status-interval", "0.1", *extra]
    first = None
    with process(args, settings, work / "worker.log") as proc:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            status = _status(settings)
            if status and status["pid"] == proc.pid:
                if first is None and status["processed"] > 0:
                    first = (status["updated_at"], status["processed"])
                if status["records_flushed"] >= n:
                    t0, done_before = first or (status["updated_at"], 0)
                    return (n - done_before) / max(status["updated_at"] - t0, 1e-9), status
            time.sleep(0.05)
    raise RuntimeError(f"the worker did not finish; see {work / 'worker.log'}")


def freshness(settings: Any, offered_eps: float, seconds: float, users: int, work: Path) -> dict[str, Any]:
    """Start a worker on an empty topic, offer ``offered_eps`` for ``seconds``, read its status."""
    n = int(offered_eps * seconds)
    with process(["-m", "streams.worker", "--status-interval", "0.2"], settings, work / "fresh.log") as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = _status(settings)
            if status and status["pid"] == proc.pid and status["assigned_partitions"]:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # let the fetchers settle after the assignment
        publish(settings, n, users, rate_eps=offered_eps, seed=11)
        deadline = time.monotonic() + 120
        status = _status(settings) or {}
        while time.monotonic() < deadline and status.get("records_flushed", 0) < n:
            time.sleep(0.2)
            status = _status(settings) or {}
        time.sleep(2.2)  # the worker summarizes its freshness stages (stage_*) every 2 s
        status = {**status, **{k: v for k, v in (_status(settings) or {}).items() if k.startswith("stage_")}}
    return status


def _settings(bootstrap: str, work: Path, name: str) -> Any:
    from infra.kafka.topics import apply_topics
    from infra.settings import load_settings

    settings = load_settings({}, bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                             state_dir=work / name)
    apply_topics(settings)
    return settings


def run(settings_or_bootstrap: Any = None, *, events: int = 100_000, users: int = 2_000,
        offered_eps: float = 2_000.0, freshness_seconds: float = 20.0,
        changelog_batches: bool = True) -> dict[str, Any]:
    """Every measurement above; starts its own EmbeddedBroker unless given settings or a bootstrap."""
    from infra.kafka.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        work = Path(tmp)
        broker = None
        if settings_or_bootstrap is None:
            broker = EmbeddedBroker(log_path=work / "broker.log").start()
            bootstrap = broker.bootstrap
        elif isinstance(settings_or_bootstrap, str):
            bootstrap = settings_or_bootstrap
        else:
            bootstrap = settings_or_bootstrap.resolved_bootstrap()
        try:
            settings = _settings(bootstrap, work, "main")
            began = time.perf_counter()
            publish(settings, events, users)
            out: dict[str, Any] = {"events": events, "users": users, "partitions": settings.partitions,
                                   "publish_eps": events / (time.perf_counter() - began)}
            out["raw_consumer_eps"] = raw_consumer_eps(settings, events)
            out["faust_noop_eps"] = faust_noop_eps(settings, events, work)
            out["rate_eps"], status = pipeline_eps(settings, events, work)
            out["rows_written"], out["flushes"] = status["rows_written"], status["flushes"]
            if changelog_batches:
                other = settings.model_copy(update={"state_dir": work / "batches"})
                out["rate_eps_changelog_batches"], _ = pipeline_eps(
                    other, events, work, "--changelog-batches", "--app-name", "bench-changelog-batches")
            out["rate_vs_faust_noop"] = out["rate_eps"] / out["faust_noop_eps"]
            out["rate_vs_raw_consumer"] = out["rate_eps"] / out["raw_consumer_eps"]
            out["target_rate_vs_faust_noop"] = 0.85
            out["target_freshness_p99_ms"] = 250.0
            loads = {"freshness": offered_eps,
                     "freshness_scaled": offered_eps * out["faust_noop_eps"] / REFERENCE_FAUST_NOOP_EPS,
                     "freshness_half_of_max": 0.5 * out["rate_eps"],
                     "freshness_0p9_of_max": 0.9 * out["rate_eps"]}
            for name, eps in loads.items():
                fresh = freshness(_settings(bootstrap, work, name), eps, freshness_seconds, users, work)
                out[f"{name}_offered_eps"] = eps
                out[f"{name}_offered_vs_pipeline"] = eps / out["rate_eps"]
                out[f"{name}_p50_ms"] = fresh.get("freshness_p50_ms")
                out[f"{name}_p99_ms"] = fresh.get("freshness_p99_ms")
                out[f"{name}_p999_ms"] = fresh.get("freshness_p999_ms")
                out[f"{name}_samples"] = fresh.get("freshness_samples")
                if name == "freshness":  # where it goes: publish -> agent -> batch sealed -> write began -> online
                    out.update({f"freshness_{key}": value for key, value in fresh.items() if key.startswith("stage_")})
        finally:
            if broker is not None:
                broker.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--offered-eps", type=float, default=2_000.0)
    parser.add_argument("--freshness-seconds", type=float, default=20.0)
    parser.add_argument("--no-changelog-batches", action="store_true")
    parser.add_argument("--noop-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_worker:
        from infra.settings import load_settings

        noop_worker(load_settings(), args.events, args.out)
        return
    print(json.dumps(run(events=args.events, users=args.users, offered_eps=args.offered_eps,
                         freshness_seconds=args.freshness_seconds,
                         changelog_batches=not args.no_changelog_batches), indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
