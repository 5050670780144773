"""The batch path at scale: >= 10 million events and exposures, the same SQL on DuckDB and Spark.

    python -m bench.bench_batch [--events 10000000 --users 250000]

The data is generated straight to Parquet in the archive's layout (numpy, seeded; no broker):
users listening over 35 days around the demo experiment's start, each exposed 1-3 times.
Then every metric of the demo spec is recomputed from the archive, on DuckDB and on Spark
(local mode, ``TANDEM_SPARK_MASTER`` for a cluster), and the two results compared. Prints
JSON: ``rows`` (events + exposures), ``duckdb_s``, ``spark_s`` (the query, its files'
checks and the collection of results; Spark's session start is ``spark_start_s``), and
whether the engines agree exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from experiments.batch.archive import Archive, event_date
from experiments.batch.engines import DuckDBEngine, SparkEngine, spark_session
from experiments.batch.recompute import recompute
from experiments.spec import DEMO_SPEC_PATH, load_spec

DAY_MS = 86_400_000
PARTITIONS = 4
TYPES = np.array(["play", "skip", "like", "session_start", "session_end"])
TYPE_SHARES = [0.62, 0.25, 0.05, 0.04, 0.04]
GENRES = np.array(["pop", "rock", "jazz", "hiphop", "classical", "electronic", "folk", "metal"])


def _strings(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pa.array(np.char.add(prefix, numbers.astype(np.str_)))


def _dictionary(indices: np.ndarray, values: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(values)).cast(pa.string())


def generate(archive: Archive, *, events: int, users: int, seed: int) -> int:
    """Write the archive; returns the number of rows (events + exposures)."""
    spec = load_spec(DEMO_SPEC_PATH)
    rng = np.random.default_rng(seed)
    user_names = np.char.add("user-", np.arange(users).astype(np.str_))
    first_day = -7
    days = 35
    offsets = dict.fromkeys(((topic, p) for topic in ("events", "exposures") for p in range(PARTITIONS)), 0)
    # Exposures: each of 95 % of the users 1-3 times in the first three weeks, one variant each.
    exposed = rng.random(users) < 0.95
    variant = rng.integers(0, 2, users)
    exposure_users = np.repeat(np.arange(users)[exposed], rng.integers(1, 4, int(exposed.sum())))
    exposure_ts = spec.start + rng.integers(0, 21 * DAY_MS, exposure_users.size)
    rows = 0
    event_number = 0
    per_day = events // days
    for day in range(first_day, first_day + days):
        count = per_day if day < first_day + days - 1 else events - per_day * (days - 1)
        user = rng.integers(0, users, count)
        ts = spec.start + day * DAY_MS + rng.integers(0, DAY_MS, count)
        kind = rng.choice(len(TYPES), count, p=TYPE_SHARES)
        genre = rng.integers(0, len(GENRES), count)
        item = rng.integers(0, 40, count)
        played = np.where(kind == 0, rng.integers(30_000, 240_000, count),
                          np.where(kind == 1, rng.integers(1_000, 9_000, count), 0))
        numbers = np.arange(event_number, event_number + count)
        event_number += count
        item_ids = np.char.add(np.char.add(GENRES[genre], "-"), item.astype(np.str_))
        has_item = kind < 3
        table = pa.table({
            "event_id": _strings("e-", numbers),
            "user_id": _dictionary(user, user_names),
            "ts": pa.array(ts, pa.int64()),
            "type": _dictionary(kind, TYPES),
            "item_id": pa.array(np.where(has_item, item_ids, None)),
            "genre": _dictionary(genre, GENRES),
            "ms_played": pa.array(played, pa.int64()),
            "kafka_partition": pa.array(user % PARTITIONS, pa.int32()),
            "kafka_offset": pa.array(np.zeros(count, np.int64)),
        })
        rows += _write_by_partition(archive, "events", table, user % PARTITIONS, offsets, date=event_date(
            spec.start + day * DAY_MS))
        today = (exposure_ts >= spec.start + day * DAY_MS) & (exposure_ts < spec.start + (day + 1) * DAY_MS)
        if today.any():
            who = exposure_users[today]
            exposures = pa.table({
                "exposure_id": _strings(f"x-{day}-", np.arange(int(today.sum()))),
                "experiment": pa.array([spec.id] * int(today.sum())),
                "variant": _dictionary(variant[who], np.array([v.name for v in spec.variants])),
                "user_id": _dictionary(who, user_names),
                "ts": pa.array(exposure_ts[today], pa.int64()),
                "kafka_partition": pa.array(who % PARTITIONS, pa.int32()),
                "kafka_offset": pa.array(np.zeros(who.size, np.int64)),
            })
            rows += _write_by_partition(archive, "exposures", exposures, who % PARTITIONS, offsets,
                                        date=event_date(spec.start + day * DAY_MS))
    return rows


def _write_by_partition(archive: Archive, topic: str, table: pa.Table, partitions: np.ndarray,
                        offsets: dict[tuple[str, int], int], *, date: str) -> int:
    for partition in range(PARTITIONS):
        chunk = table.filter(pa.array(partitions == partition))
        first = offsets[(topic, partition)]
        last = first + chunk.num_rows - 1
        chunk = chunk.set_column(chunk.schema.get_field_index("kafka_offset"), "kafka_offset",
                                 pa.array(np.arange(first, last + 1), pa.int64()))
        archive.write_file(topic, partition, first, last, chunk, date=date, of=1)
        offsets[(topic, partition)] = last + 1
    return table.num_rows


def run(*, events: int = 10_000_000, users: int = 250_000, seed: int = 1) -> dict[str, Any]:
    spec = load_spec(DEMO_SPEC_PATH)
    with tempfile.TemporaryDirectory(prefix="tandem-bench-batch-") as workdir:
        archive = Archive(str(Path(workdir) / "archive"))
        began = time.perf_counter()
        rows = generate(archive, events=events, users=users, seed=seed)
        generate_s = time.perf_counter() - began
        size = sum(f.stat().st_size for f in Path(archive.root).rglob("*.parquet"))

        began = time.perf_counter()
        on_duckdb = recompute(spec, archive, engine=DuckDBEngine())
        duckdb_s = time.perf_counter() - began

        began = time.perf_counter()
        spark_session()
        spark_start_s = time.perf_counter() - began
        began = time.perf_counter()
        on_spark = recompute(spec, archive, engine=SparkEngine())
        spark_s = time.perf_counter() - began
    return {
        "rows": rows,
        "archive_bytes": size,
        "generate_s": round(generate_s, 1),
        "duckdb_s": round(duckdb_s, 2),
        "spark_s": round(spark_s, 2),
        "spark_start_s": round(spark_start_s, 1),
        "engines_equal": on_duckdb.stats == on_spark.stats,
        "users_in_closed_windows": sum(s.n for s in on_duckdb.stats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=250_000)
    args = parser.parse_args(argv)
    json.dump(run(events=args.events, users=args.users), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
