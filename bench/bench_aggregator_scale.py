"""The aggregator at platform scale: PostgreSQL, several processes, many experiments, state per user.

    python -m bench.bench_aggregator_scale [--users 1500 --days 21]

Prints JSON:

* ``postgres_rate_eps``: one aggregator process on the embedded PostgreSQL, records/s;
* ``processes``: ``{"1": eps, "2": eps}``, K processes of one group on PostgreSQL, each a
  ``tandem experiments aggregate`` process, records/s over the span of all their batches;
* ``experiments``: ``{"1": eps, "10": eps, "100": eps}``, the store alone (SQLite, no broker)
  fed the same events with E live experiments, each user in at most 10 of them, over 14 days
  (a batch moves the watermark about a day); ``experiments_live_time``: ``{"1", "100"}`` the
  same traffic squeezed into a minute of event time, as a live stream's batches move it;
* ``state_bytes_per_exposed_user``: ``{"10": b, "100": b}``, bytes of stored state per exposed
  user at 10 and 100 events per user, with the part that is event ids, on the configuration
  that bounds state by users and days: ``--resolution 1d --dedupe-span 1h --no-item-sets`` (the
  demo's metrics are counts and sums; ``state_detail.*.item_sets_total`` is the same run keeping
  the item and genre sets, which distinct-count metrics need and which grow with the items a
  user plays in a day).

Nothing is asserted; the targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_aggregator import publish
from experiments.aggregation import AggregationStore, SourceRecord, changelog
from experiments.aggregation.aggregator import Aggregator
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec, spec_to_json
from infra.kafka.broker import EmbeddedBroker
from infra.kafka.topics import apply_topics
from infra.postgres import EmbeddedPostgres
from infra.settings import Settings, load_settings
from streams.events import Exposure, ListeningEvent, encode

DAY = 86_400_000
#: The "day" of ``experiments_live_time``: 14 of them fit in a minute of event time, so no batch
#: moves a watermark far (``WATERMARK_REPUBLISH_MS``), as in a live stream; no window closes.
LIVE_DAY_MS = 4_000
TOPICS = {"events": "tandem.events", "exposures": "tandem.exposures", "experiments": "tandem.experiments"}
PARTITIONS = 4
#: Event ids are remembered this long behind watermark - allowed lateness (``--dedupe-span``).
DEDUPE_SPAN_MS = 3_600_000


def _span_rate(stats: list[dict[str, Any]]) -> float:
    firsts = [s["first_batch_at"] for s in stats if s.get("first_batch_at")]
    lasts = [s["last_batch_at"] for s in stats if s.get("last_batch_at")]
    applied = sum(s["applied"] for s in stats)
    busy = max(lasts) - min(firsts) if firsts and lasts else 0.0
    return applied / busy if busy > 0 else 0.0


def processes_rate(settings: Settings, dsn: str, k: int, workdir: Path) -> float:
    """K ``tandem experiments aggregate`` processes in one group; monotonic clocks are system-wide."""
    env = {
        **os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(workdir / "state"),
        "TANDEM_POSTGRES_DSN": dsn,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "experiments", "aggregate", "--idle-exit", "6"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(k)
    ]
    stats = []
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        stats.append(json.loads(err.strip().splitlines()[-1]))
    return _span_rate(stats)


def broker_figures(*, users: int, days: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tandem-bench-scale-") as tmp, EmbeddedBroker(
        log_path=Path(tmp) / "broker.log"
    ) as broker, EmbeddedPostgres(data_dir=Path(tmp) / "postgres") as postgres:
        out: dict[str, Any] = {"processes": {}}
        for name, k in (("one", 1), ("1", 1), ("2", 2)):
            prefix = f"s{name}."
            settings = load_settings({}, bootstrap_servers=broker.bootstrap, state_dir=Path(tmp) / prefix,
                                     topic_prefix=prefix)
            apply_topics(settings)
            out["records"] = publish(settings, users=users, days=days)
            dsn = postgres.create_database(f"bench_{name}")
            if name == "one":  # in this process, as bench_aggregator measures SQLite
                pg = load_settings({}, bootstrap_servers=broker.bootstrap, state_dir=Path(tmp) / prefix,
                                   topic_prefix=prefix, postgres_dsn=dsn)
                stats = Aggregator(settings=pg).run(idle_exit_s=3.0)
                out["postgres_rate_eps"] = round(_span_rate([stats.__dict__]))
            else:
                out["processes"][name] = round(processes_rate(settings, dsn, k, Path(tmp) / prefix))
        one, two = out["processes"]["1"], out["processes"]["2"]
        out["scale_efficiency"] = round(two / (2 * one), 3) if one else None
        return out


# ---- the store alone: many experiments, state per user ---------------------------------------
def _spec(base: ExperimentSpec, index: int) -> ExperimentSpec:
    return base.model_copy(update={"id": f"exp-{index:03d}", "salt": f"exp-{index:03d}", "layer": None})


def _records(*, experiments: int, users: int, events_per_user: int, seed: int, day: int = DAY) -> list[SourceRecord]:
    """Specs, then per user its events over 14 days from its first visit and, as serving logs them,
    an exposure to each of its (at most 10) experiments on every day it is active (at the day's
    first event; the first visit counts as one), in time order, on 4 partitions by user.

    Exposures flow as long as users are active, as they do from serving: a partition whose
    exposures stopped would hold its watermark back, and no window would ever close."""
    base = load_spec(DEMO_SPEC_PATH)
    specs = [_spec(base, i) for i in range(experiments)]
    rng = random.Random(seed)
    offsets: dict[tuple[str, int], int] = {}

    def record(topic: str, part: int, key: str, value: bytes) -> SourceRecord:
        tp = (topic, part)
        offsets[tp] = offsets.get(tp, -1) + 1
        return SourceRecord(topic, part, offsets[tp], key.encode(), value)

    out = [record(TOPICS["experiments"], 0, s.id, spec_to_json(s)) for s in specs]
    timed: list[tuple[int, str, int, str, bytes]] = []
    for u in range(users):
        user, part = f"user-{u:05d}", u % PARTITIONS
        first = base.start + rng.randrange(day)
        assigned = [(spec, rng.choice(spec.variants).name) for spec in rng.sample(specs, min(10, experiments))]
        visits = {first // day: first}
        for i in range(events_per_user):
            ts = first + rng.randrange(14 * day)
            visits[ts // day] = min(ts, visits.get(ts // day, ts))
            e = ListeningEvent(event_id=f"e-{u}-{i}", user_id=user, ts=ts, type="play", item_id=f"i{rng.randrange(50)}",
                               genre=f"g{rng.randrange(8)}", ms_played=rng.randrange(200_000))
            timed.append((ts, TOPICS["events"], part, user, encode(e)))
        for visit, ts in visits.items():
            for spec, variant in assigned:
                x = Exposure(exposure_id=f"x-{spec.id}-{u}-{visit}", experiment=spec.id, variant=variant,
                             user_id=user, ts=ts)
                timed.append((ts, TOPICS["exposures"], part, user, encode(x)))
    timed.sort(key=lambda t: t[0])
    out += [record(topic, part, key, value) for _, topic, part, key, value in timed]
    return out


def store_rate(records: list[SourceRecord], path: Path) -> float:
    with AggregationStore(path, allowed_lateness_ms=30 * 60_000, topics=TOPICS) as store:
        store.declare_partitions((t, p) for t in (TOPICS["events"], TOPICS["exposures"]) for p in range(PARTITIONS))
        began = time.perf_counter()
        for i in range(0, len(records), 5000):
            store.apply_batch(records[i:i + 5000])
        return len(records) / (time.perf_counter() - began)


def state_bytes(path: Path) -> dict[str, int]:
    """Bytes of everything stored for the partitions (the changelog's rows, ownership, watermarks,
    offsets; not the outbox of records waiting for the broker, nor the specs), and the part of
    it that is event ids (dedupe)."""
    import sqlite3

    import orjson

    with sqlite3.connect(path) as db:
        def size(table: str) -> int:
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]  # noqa: S608 (fixed names)
            expr = " + ".join(f"COALESCE(LENGTH(CAST({c} AS BLOB)), 0)" for c in cols)
            return int(db.execute(f"SELECT COALESCE(SUM({expr}), 0) FROM {table}").fetchone()[0])  # noqa: S608

        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        sizes = {t: size(t) for t in tables if t not in ("agg_outbox", "agg_specs")}
        payloads = [row[0] for row in db.execute("SELECT payload FROM agg_state_log ORDER BY part, seq")]
    event_ids = sum(
        len(orjson.dumps(doc.get("E", {}))) + len(orjson.dumps(doc.get("pe", [])))
        for doc in map(orjson.loads, payloads)
    )
    users = {user for restored in [changelog.replay(payloads)] for _, user in restored.anchors}
    return {"total": sum(sizes.values()), "event_ids": event_ids, "exposed_users": len(users)}


def _stored_state(records: list[SourceRecord], path: Path, *, item_sets: bool) -> dict[str, int]:
    with AggregationStore(path, allowed_lateness_ms=30 * 60_000, topics=TOPICS, resolution_ms=DAY,
                          dedupe_span_ms=DEDUPE_SPAN_MS, item_sets=item_sets) as store:
        for i in range(0, len(records), 5000):
            store.apply_batch(records[i:i + 5000])
        logged = state_bytes(path)
        store.compact()  # the state itself, without the deltas written since the last snapshot
    return {**state_bytes(path), "before_compaction": logged["total"]}


def store_figures(*, users: int) -> dict[str, Any]:
    out: dict[str, Any] = {"experiments": {}, "experiments_live_time": {}, "state_bytes_per_exposed_user": {},
                           "state_detail": {}}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-store-") as tmp:
        for e in (1, 10, 100):
            records = _records(experiments=e, users=users, events_per_user=20, seed=1)
            out["experiments"][str(e)] = round(store_rate(records, Path(tmp) / f"exp{e}.db"))
        for e in (1, 100):  # the same traffic inside a minute of event time, as a live stream's batches see it
            records = _records(experiments=e, users=users, events_per_user=20, seed=1, day=LIVE_DAY_MS)
            out["experiments_live_time"][str(e)] = round(store_rate(records, Path(tmp) / f"live{e}.db"))
        for n in (10, 100):
            records = _records(experiments=10, users=users // 2, events_per_user=n, seed=2)
            sizes, with_sets = (_stored_state(records, Path(tmp) / f"state{n}{keep}.db", item_sets=keep)
                                for keep in (False, True))
            sizes["item_sets_total"] = with_sets["total"]
            out["state_bytes_per_exposed_user"][str(n)] = round(sizes["total"] / sizes["exposed_users"])
            out["state_detail"][str(n)] = sizes
    eps = out["experiments"]
    out["experiments_ratio_100_to_1"] = round(eps["100"] / eps["1"], 3)
    live = out["experiments_live_time"]
    out["experiments_live_time_ratio_100_to_1"] = round(live["100"] / live["1"], 3)
    b = out["state_bytes_per_exposed_user"]
    out["state_ratio_100_to_10"] = round(b["100"] / b["10"], 3)
    out["targets"] = {"experiments_ratio_100_to_1": ">= 0.5", "state_ratio_100_to_10": "<= 1.2"}
    return out


def run(*, users: int = 1500, days: int = 21) -> dict[str, Any]:
    return {**broker_figures(users=users, days=days), **store_figures(users=users)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--only", choices=["broker", "store"], default=None)
    args = parser.parse_args(argv)
    if args.only == "store":
        result = store_figures(users=args.users)
    elif args.only == "broker":
        result = broker_figures(users=args.users, days=args.days)
    else:
        result = run(users=args.users, days=args.days)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
