"""Every benchmark, one after another, into ``bench/results.json`` (``make bench``).

Each figure comes with its baseline measured in the same run (a counting Faust
agent and a raw consumer for the pipelines, the bare policy update for the
learner), because this machine is shared and noisy: ratios travel, absolute
numbers do not. Nothing here asserts a time; the targets are printed beside the
figures for a reader to judge.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def calibration_s(rounds: int = 3) -> float:
    """Seconds, best of ``rounds``, for a fixed pure-Python workload (200k small JSON records
    encoded and decoded): how fast this machine runs Python, to compare absolute figures of
    runs on different machines (the same code measured 2-3x apart on two of them)."""
    record = {"event_id": "e" * 32, "user_id": "user-42", "ts": 1_767_225_600_000, "type": "play",
              "item_id": "item-7", "genre": "jazz", "ms_played": 123_456}
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(200_000):
            json.loads(json.dumps(record))
        best = min(best, time.perf_counter() - began)
    return round(best, 3)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python_calibration_s": calibration_s(),
    }


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of nested dicts."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changes(results: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """One line per figure: its value and, when the previous results have it, the change.

    >>> print("\\n".join(changes({"a": {"x": 110, "s": "v"}}, {"a": {"x": 100}})))
    a.x                                                          110  (was 100, +10.0%)
    a.s                                                          v
    """
    before = _leaves(previous or {})
    lines = []
    for key, value in _leaves(results).items():
        line = f"{key:<60} {value}"
        old = before.get(key)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, old))
        if numbers and old:
            line += f"  (was {old}, {100.0 * (value - old) / abs(old):+.1f}%)"
        elif numbers:
            line += f"  (was {old})"
        lines.append(line)
    return lines


def main() -> int:
    from bench import (
        bench_aggregator,
        bench_aggregator_scale,
        bench_archive,
        bench_batch,
        bench_features,
        bench_learner,
        bench_lifecycle,
        bench_serving,
        bench_serving_experiments,
    )

    previous = None
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except ValueError:
            print(f"[bench] {RESULTS} is not JSON: no comparison", file=sys.stderr)
        else:
            RESULTS.with_name("results.previous.json").write_text(RESULTS.read_text())
    results: dict[str, Any] = {"machine": machine()}
    steps = {
        "features": lambda: bench_features.run(),
        "serving": lambda: bench_serving.run(),
        "serving_experiments": lambda: bench_serving_experiments.run(),
        "learner": lambda: bench_learner.run(),
        "aggregator": lambda: bench_aggregator.run(),
        "lifecycle": lambda: bench_lifecycle.run(),
        "archive": lambda: bench_archive.run(),
        "batch": lambda: bench_batch.run(),
        "aggregator_scale": lambda: bench_aggregator_scale.run(),
    }
    for name, step in steps.items():
        began = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results[name] = step()
        results[name]["bench_wall_s"] = round(time.monotonic() - began, 1)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive a failure
    print(json.dumps(results, indent=2))
    print(f"[bench] each figure, and its change against the previous {RESULTS.name}"
          f" (kept as results.previous.json):" if previous else "[bench] each figure:")
    print("\n".join(changes(results, previous)))
    print(f"[bench] wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
