"""The ``experiment-metrics`` records as readers need them: newest per key, partials summed.

The aggregator publishes one record per ``experiment/variant/metric`` key; a scaled-out
aggregator publishes one partial per partition, keyed ``experiment/variant/metric/partition``.
Readers take the newest record of each key and sum the partials of a key; both forms give one
record per (variant, metric):

>>> a = {"experiment": "e", "variant": "c", "metric": "m", "n": 2, "sum": 3.0, "sum_sq": 5.0, "exposed": 4,
...      "in_progress": 2, "watermark_ts": 10, "late_records": 0, "multi_variant_users": 0}
>>> b = dict(a, n=1, sum=1.0, sum_sq=1.0, exposed=1, in_progress=0, watermark_ts=8)
>>> (row,) = combine({"e/c/m/0": a, "e/c/m/1": b}).values()
>>> row["n"], row["sum"], row["exposed"], row["watermark_ts"]
(3, 4.0, 5, 8)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from experiments.aggregation.stats import merge_partials

#: The fields that add up across the partials of one (experiment, variant, metric).
ADDITIVE = ("n", "sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross_sum",
            "exposed", "in_progress", "late_records", "multi_variant_users")


def base_key(key: str) -> str:
    """``experiment/variant/metric`` of a key, with or without a trailing ``/partition``."""
    parts = key.split("/")
    return "/".join(parts[:3]) if len(parts) > 3 and parts[3].isdigit() else key


def combine(newest: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum the partials (newest record per full key) into one record per ``experiment/variant/metric``.

    The aggregator's partials carry their ``partition`` and exact ``terms``: they are summed exactly,
    as every reader sums them (``merge_partials``), into a total without either, so that a report
    built on the total does not merge it a second time (it would take one partition's sums for all).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for key in sorted(newest):
        groups.setdefault(base_key(key), []).append(newest[key])
    out: dict[str, dict[str, Any]] = {}
    for target, parts in groups.items():
        if all("partition" in part and "terms" in part for part in parts):
            (out[target],) = merge_partials([dict(part) for part in parts])
            continue
        row = {k: v for k, v in parts[0].items() if k not in ("partition", "terms")}
        for record in parts[1:]:
            for name in ADDITIVE:
                if record.get(name) is not None:
                    row[name] = (row.get(name) or 0) + record[name]
            # The figures are complete only up to the slowest partial.
            row["watermark_ts"] = min(int(row["watermark_ts"]), int(record["watermark_ts"]))
        out[target] = row
    return out


def newest_per_key(versions: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Mapping[str, Any]]:
    """The last version of each key, in the order given (topic order)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for key, record in versions:
        newest[key] = record
    return newest


def as_of(versions: Iterable[tuple[str, Mapping[str, Any]]], watermark_ts: int) -> list[dict[str, Any]]:
    """The combined records as they stood when every figure was complete up to ``watermark_ts``."""
    known = [(key, record) for key, record in versions if int(record["watermark_ts"]) <= watermark_ts]
    return list(combine(newest_per_key(known)).values())
