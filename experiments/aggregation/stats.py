"""Per (experiment, variant, metric) sufficient statistics and the ``experiment-metrics`` record."""

from __future__ import annotations

import json
import math
from hashlib import blake2b
from typing import Any

from experiments.aggregation.windows import Contribution
from experiments.spec import Metric

RECORD_VERSION = 1


class ExactSum:
    """A float sum rounded once, at the end: its value does not depend on the order of the terms.

    Sums of squares of milliseconds pass 2**53 at a few hundred users, where a running float
    sum depends on the order of its additions; a restarted aggregator, which reloads its sums
    from the stored contributions, adds them in another order than one that never stopped.
    Shewchuk's non-overlapping partials (the algorithm of ``math.fsum``) keep the sum exact.
    """

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, term: float) -> None:
        x = float(term)
        kept = 0
        for y in self._partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                self._partials[kept] = low
                kept += 1
            x = high
        self._partials[kept:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self._partials)


def _total(name: str) -> property:
    def value(stats: SufficientStats) -> float:
        return stats._sums[name].value

    return property(value)


class SufficientStats:
    """n and the sums of one (experiment, variant, metric), each independent of the order of ``add``."""

    __slots__ = ("n", "_sums")

    FIELDS = ("sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross_sum")

    def __init__(self) -> None:
        self.n = 0
        self._sums = {name: ExactSum() for name in self.FIELDS}

    sum = _total("sum")
    sum_sq = _total("sum_sq")
    den_sum = _total("den_sum")
    den_sum_sq = _total("den_sum_sq")
    cross_sum = _total("cross_sum")
    pre_sum = _total("pre_sum")
    pre_sum_sq = _total("pre_sum_sq")
    pre_cross_sum = _total("pre_cross_sum")

    def add(self, c: Contribution) -> None:
        y, sums = c.value, self._sums
        self.n += 1
        sums["sum"].add(y)
        sums["sum_sq"].add(y * y)
        if c.den is not None:
            sums["den_sum"].add(c.den)
            sums["den_sum_sq"].add(c.den * c.den)
            sums["cross_sum"].add(y * c.den)
        if c.pre is not None:
            sums["pre_sum"].add(c.pre)
            sums["pre_sum_sq"].add(c.pre * c.pre)
            sums["pre_cross_sum"].add(c.pre * y)


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
