"""What the batch path returns: typed, frozen figures, never dicts indexed by strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: The sums of a metric's sufficient statistics, in the order of the ``experiment-metrics`` record.
SUM_FIELDS = ("sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross_sum")


@dataclass(frozen=True)
class MetricStats:
    """The sufficient statistics of one (experiment, variant, metric), as the stream publishes them.

    Sums a metric does not have (a ratio's for a mean, CUPED's without a covariate) are None.
    """

    experiment: str
    variant: str
    metric: str
    kind: str
    role: str
    n: int
    sum: float
    sum_sq: float
    den_sum: float | None
    den_sum_sq: float | None
    cross_sum: float | None
    pre_sum: float | None
    pre_sum_sq: float | None
    pre_cross_sum: float | None
    exposed: int
    multi_variant_users: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.experiment, self.variant, self.metric)

    @property
    def in_progress(self) -> int:
        return self.exposed - self.n

    def sums(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in SUM_FIELDS}


@dataclass(frozen=True)
class BatchResult:
    """An experiment recomputed from the archive: its figures, the engine, and the time they cover.

    ``covers_from`` is the experiment's start; ``closed_upto`` the instant up to which windows are
    closed (the watermark minus the allowed lateness); ``watermark`` the archive's (or the
    stream's) watermark the figures were cut at.
    """

    experiment: str
    engine: str
    stats: tuple[MetricStats, ...]
    covers_from: int
    watermark: int | None
    closed_upto: int | None
    source: str = "batch"

    def to_stats_input(self) -> list[dict[str, Any]]:
        """The ``tandem stats`` input: one record per variant and metric, with where it came from."""
        return [
            {
                **asdict(s),
                "in_progress": s.in_progress,
                "watermark_ts": self.watermark or 0,
                "late_records": 0,
                "source": self.source,
                "engine": self.engine,
                "covers_from": self.covers_from,
                "closed_upto": self.closed_upto,
            }
            for s in self.stats
        ]
