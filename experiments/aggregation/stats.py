"""Per (experiment, variant, metric) sufficient statistics and the ``experiment-metrics`` record."""

from __future__ import annotations

import math
from hashlib import blake2b
from typing import Any

import orjson

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

    @property
    def terms(self) -> list[float]:
        """Non-overlapping floats whose exact sum is this sum: a reader adding the terms of every
        partition's record gets the total exactly, as one process would have."""
        return list(self._partials)


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

    def terms(self) -> dict[str, list[float]]:
        """Every sum as its terms: ``restore(n, terms())`` is this object again, terms and all."""
        return {name: exact.terms for name, exact in self._sums.items()}

    @classmethod
    def restore(cls, n: int, terms: dict[str, list[float]]) -> SufficientStats:
        stats = cls()
        stats.n = n
        for name, partials in terms.items():
            stats._sums[name]._partials = [float(t) for t in partials]
        return stats

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


def record_key(experiment: str, variant: str, metric: str, partition: int | None = None) -> str:
    base = f"{experiment}/{variant}/{metric}"
    return base if partition is None else f"{base}/{partition}"


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
    partition: int | None = None,
) -> dict[str, Any]:
    """The record of one (experiment, variant, metric): the total, or with ``partition`` the partial
    of one input partition, published to ``experiment-metrics`` with key
    ``experiment/variant/metric/partition`` (docs/aggregation.md)."""
    ratio = metric.kind == "ratio"
    cuped = metric.covariate is not None
    key = record_key(experiment, variant, metric.name, partition)
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
    if partition is not None:
        record["partition"] = partition
        record["terms"] = {name: stats._sums[name].terms for name in SufficientStats.FIELDS}
    record["record_id"] = f"{key}@{watermark_ts}:{_content_digest(record)}"
    return record


def _content_digest(record: dict[str, Any]) -> str:
    """A hash of everything in a record but its id and watermark (the id names the watermark)."""
    content = orjson.dumps({**record, "record_id": "", "watermark_ts": 0}, option=orjson.OPT_SORT_KEYS)
    return blake2b(content, digest_size=6).hexdigest()


def with_watermark(record: dict[str, Any], watermark_ts: int) -> dict[str, Any]:
    """The same record as of a later watermark: a batch that moved the watermark without changing
    an experiment's figures republishes its records this way, without recomputing them."""
    key, digest = record["record_id"].rsplit("@", 1)[0], record["record_id"].rsplit(":", 1)[1]
    return {**record, "watermark_ts": watermark_ts, "record_id": f"{key}@{watermark_ts}:{digest}"}


#: Fields of a record that add up over partitions (the sums are added exactly from their terms).
_COUNTS = ("n", "exposed", "in_progress", "late_records", "multi_variant_users")


def merge_partials(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The total per (experiment, variant, metric) from the newest record of each partition.

    ``records`` may hold several versions per key, in topic order: the newest per
    ``experiment/variant/metric/partition`` counts. Records without a partition (a single-process
    total) pass through as they are. The watermark of a total is its slowest partition's.
    """
    newest: dict[tuple[str, str, str], dict[Any, dict[str, Any]]] = {}
    for record in records:
        key = (record["experiment"], record["variant"], record["metric"])
        newest.setdefault(key, {})[record.get("partition")] = record
    merged = []
    for parts in newest.values():
        if None in parts or len(parts) == 1 and "terms" not in next(iter(parts.values())):
            merged.append(parts.get(None) or next(iter(parts.values())))
            continue
        ordered = [parts[p] for p in sorted(parts)]
        first = ordered[0]
        total = {k: v for k, v in first.items() if k not in ("partition", "terms")}
        for name in _COUNTS:
            total[name] = sum(int(r[name]) for r in ordered)
        for name in SufficientStats.FIELDS:
            if first.get(name) is None:
                continue
            exact = ExactSum()
            for r in ordered:
                for term in r["terms"][name]:
                    exact.add(term)
            total[name] = exact.value
        total["watermark_ts"] = min(int(r["watermark_ts"]) for r in ordered)
        total_key = record_key(total["experiment"], total["variant"], total["metric"])
        total["record_id"] = f"{total_key}@{total['watermark_ts']}:{_content_digest(total)}"
        merged.append(total)
    return merged
