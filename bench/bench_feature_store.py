"""Benchmark of the Feast layer on the SQLite online store; prints JSON, asserts nothing.

    python -m bench.bench_feature_store [--rows 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feature_store.client import FeatureStoreClient
from feature_store.settings import FeatureStoreSettings
from streams.features import default_features


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1e3, "max_ms": max(samples) * 1e3}


def run(rows: int, repeat: int) -> dict:
    defaults = default_features()
    began = time.perf_counter()
    import feast  # noqa: F401 - measured on its own: the bulk of a cold start

    out: dict = {"features": len(defaults), "rows_per_batch": rows,
                 "import_feast_s": time.perf_counter() - began}
    with tempfile.TemporaryDirectory() as tmp:
        settings = FeatureStoreSettings(repo_path=Path(tmp))
        client = FeatureStoreClient(settings=settings, defaults=defaults)
        began = time.perf_counter()
        client.start()
        out["start_apply_s"] = time.perf_counter() - began
        began = time.perf_counter()
        client.read(["u0"])
        out["first_read_s"] = time.perf_counter() - began
        base = datetime(2026, 1, 1, tzinfo=UTC)

        def batch(k: int) -> list[dict]:
            at = base + timedelta(seconds=k)
            return [{"user_id": f"u{i}", "event_timestamp": at, **defaults, "plays_1h": k}
                    for i in range(rows)]

        plans = (("write_online_only", False, True), ("write_online_and_parquet", True, True),
                 ("write_online_only_no_older_check", False, False))
        for j, (name, offline_too, check) in enumerate(plans):
            client.settings = settings.model_copy(update={"drop_older_writes": check})
            samples = []
            for k in range(repeat):
                rows_k = batch(k + j * repeat)
                began = time.perf_counter()
                client.write_rows(rows_k, offline_too=offline_too)
                samples.append(time.perf_counter() - began)
            out[name] = _ms(samples)
        for n in (1, 100):
            samples = []
            for k in range(repeat):
                users = [f"u{(k + i) % rows}" for i in range(n)]
                began = time.perf_counter()
                client.read(users)
                samples.append(time.perf_counter() - began)
            out[f"read_{n}_users"] = _ms(samples)
        client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.repeat), indent=2))


if __name__ == "__main__":
    main()
