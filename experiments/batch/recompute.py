"""An experiment's sufficient statistics recomputed from the archive on one engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from experiments.batch.archive import Archive
from experiments.batch.compiler import compile_experiment
from experiments.batch.engines import Engine
from experiments.batch.results import SUM_FIELDS, BatchResult, MetricStats
from experiments.spec import ExperimentSpec, Metric

#: The aggregator's default (``tandem experiments aggregate --allowed-lateness``).
DEFAULT_ALLOWED_LATENESS_MS = 30 * 60 * 1000
_RATIO = ("den_sum", "den_sum_sq", "cross_sum")
_CUPED = ("pre_sum", "pre_sum_sq", "pre_cross_sum")


def recompute(
    spec: ExperimentSpec,
    archive: Archive,
    *,
    engine: Engine,
    metrics: Sequence[str] | None = None,
    watermark: int | None = None,
    closed_upto: int | Mapping[int, int] | None = None,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
) -> BatchResult:
    """Compute ``spec``'s metrics (all, or those named) over the archive.

    Windows are closed up to ``closed_upto`` when given (one instant, or one per exposures
    partition), else up to ``watermark - allowed_lateness_ms``, the watermark being the
    archive's own (the minimum over input partitions of the newest event time) when not given.
    """
    if closed_upto is None:
        if watermark is None:
            watermark = engine.watermark(archive)
        closed_upto = {} if watermark is None else watermark - allowed_lateness_ms
    query = compile_experiment(spec, closed_upto=closed_upto, metrics=metrics)
    rows = engine.run(query, archive)
    return BatchResult(
        experiment=spec.id,
        engine=engine.name,
        stats=tuple(_stats(spec, query.metrics, rows)),
        covers_from=spec.start,
        watermark=watermark,
        closed_upto=closed_upto if isinstance(closed_upto, int) else min(closed_upto.values(), default=None),
    )


def _stats(spec: ExperimentSpec, metrics: Sequence[Metric], rows: list[dict[str, Any]]) -> list[MetricStats]:
    by_variant = {row["variant"]: row for row in rows}
    out = []
    for variant in spec.variants:
        row = by_variant.get(variant.name, {})
        for i, metric in enumerate(metrics):
            sums: dict[str, float | None] = {}
            for name in SUM_FIELDS:
                present = (name not in _RATIO or metric.kind == "ratio") and (
                    name not in _CUPED or metric.covariate is not None
                )
                # Exact integers from the engine, rounded once here (as the stream rounds its exact sums).
                sums[name] = float(row.get(f"m{i}_{name}") or 0) if present else None
            out.append(
                MetricStats(
                    experiment=spec.id, variant=variant.name, metric=metric.name, kind=metric.kind,
                    role=metric.role, n=int(row.get(f"m{i}_n") or 0),
                    sum=sums["sum"] or 0.0, sum_sq=sums["sum_sq"] or 0.0,
                    den_sum=sums["den_sum"], den_sum_sq=sums["den_sum_sq"], cross_sum=sums["cross_sum"],
                    pre_sum=sums["pre_sum"], pre_sum_sq=sums["pre_sum_sq"], pre_cross_sum=sums["pre_cross_sum"],
                    exposed=int(row.get("exposed") or 0),
                    multi_variant_users=int(row.get("multi_variant_users") or 0),
                )
            )
    return out
