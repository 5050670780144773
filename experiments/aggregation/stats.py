"""Per (experiment, variant, metric) sufficient statistics and the ``experiment-metrics`` record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from experiments.aggregation.windows import Contribution
from experiments.spec import Metric

RECORD_VERSION = 1


@dataclass(slots=True)
class SufficientStats:
    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    den_sum: float = 0.0
    den_sum_sq: float = 0.0
    cross_sum: float = 0.0
    pre_sum: float = 0.0
    pre_sum_sq: float = 0.0
    pre_cross_sum: float = 0.0

    def add(self, c: Contribution) -> None:
        y = c.value
        self.n += 1
        self.sum += y
        self.sum_sq += y * y
        if c.den is not None:
            self.den_sum += c.den
            self.den_sum_sq += c.den * c.den
            self.cross_sum += y * c.den
        if c.pre is not None:
            self.pre_sum += c.pre
            self.pre_sum_sq += c.pre * c.pre
            self.pre_cross_sum += c.pre * y


def record_key(experiment: str, variant: str, metric: str) -> str:
    return f"{experiment}/{variant}/{metric}"


def metric_record(
    *,
    experiment: str,
    variant: str,
    metric: Metric,
    stats: SufficientStats,
    exposed: int,
    watermark_ts: int,
    late_records: int,
    multi_variant_users: int,
) -> dict[str, Any]:
    """The record published (key ``experiment/variant/metric``) to ``experiment-metrics``."""
    ratio = metric.kind == "ratio"
    cuped = metric.covariate is not None
    key = record_key(experiment, variant, metric.name)
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "record_id": "",
        "experiment": experiment,
        "variant": variant,
        "metric": metric.name,
        "kind": metric.kind,
        "role": metric.role,
        "n": stats.n,
        "sum": stats.sum,
        "sum_sq": stats.sum_sq,
        "den_sum": stats.den_sum if ratio else None,
        "den_sum_sq": stats.den_sum_sq if ratio else None,
        "cross_sum": stats.cross_sum if ratio else None,
        "pre_sum": stats.pre_sum if cuped else None,
        "pre_sum_sq": stats.pre_sum_sq if cuped else None,
        "pre_cross_sum": stats.pre_cross_sum if cuped else None,
        "exposed": exposed,
        "in_progress": exposed - stats.n,
        "watermark_ts": watermark_ts,
        "late_records": late_records,
        "multi_variant_users": multi_variant_users,
    }
    content = json.dumps(record, sort_keys=True).encode("utf-8")
    record["record_id"] = f"{key}@{watermark_ts}:{blake2b(content, digest_size=6).hexdigest()}"
    return record
