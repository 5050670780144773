"""Stream = batch: the stream's closed-window figures against a recomputation from the archive.

For every configured metric and variant the batch path computes exactly the users whose
windows the stream had closed (at each record's watermark minus the allowed lateness) and
compares: ``n`` equal, every sum equal to 1e-9 relative (the stream rounds an exact sum of
rounded squares; the engines sum exact integers). Every difference is reported with the
metric, the variant and the count of users involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.batch.archive import Archive
from experiments.batch.engines import Engine, engine
from experiments.batch.recompute import DEFAULT_ALLOWED_LATENESS_MS, recompute
from experiments.batch.results import SUM_FIELDS, MetricStats
from experiments.batch.stream import StreamFigure
from experiments.spec import ExperimentSpec

RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Difference:
    """One figure that differs: ``users`` is |n(stream) - n(batch)| when n differs, else the n
    users whose values make up the sum."""

    metric: str
    variant: str
    field: str
    stream: float | int | None
    batch: float | int | None
    users: int
    engine: str

    def describe(self) -> str:
        if self.field == "record":
            return f"{self.metric} / {self.variant}: no record on experiment-metrics"
        return (f"{self.metric} / {self.variant}: {self.field} stream {self.stream!r} != {self.engine} "
                f"{self.batch!r} ({self.users} users involved)")


@dataclass(frozen=True)
class MetricCheck:
    """One metric over all variants: equal on every engine, or not."""

    metric: str
    users: int  # closed users over the variants (the stream's n)
    equal: bool


@dataclass(frozen=True)
class CheckResult:
    experiment: str
    engines: tuple[str, ...]
    metrics: tuple[MetricCheck, ...]
    differences: tuple[Difference, ...]
    late_records: int

    @property
    def equal(self) -> bool:
        return not self.differences and bool(self.metrics)

    def lines(self) -> list[str]:
        """What ``tandem experiments check`` and the demo print: ``stream = batch`` per metric."""
        engines = " = ".join(self.engines)
        out = [
            f"{m.metric}: stream {'=' if m.equal else '!='} batch ({engines}; {m.users} users in closed windows)"
            for m in self.metrics
        ]
        out += [d.describe() for d in self.differences]
        if self.late_records:
            out.append(f"the stream rejected {self.late_records} late records (they are in the archive)")
        return out


def _close(a: float | int | None, b: float | int | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))


def compare(stream: MetricStats, batch: MetricStats, engine_name: str) -> list[Difference]:
    out = []
    if stream.n != batch.n:
        out.append(Difference(stream.metric, stream.variant, "n", stream.n, batch.n, abs(stream.n - batch.n),
                              engine_name))
    for name in SUM_FIELDS:
        a, b = getattr(stream, name), getattr(batch, name)
        if not _close(a, b):
            out.append(Difference(stream.metric, stream.variant, name, a, b,
                                  abs(stream.n - batch.n) or stream.n, engine_name))
    return out


def check(
    spec: ExperimentSpec,
    figures: Mapping[tuple[str, str], StreamFigure],
    archive: Archive,
    *,
    engines: Sequence[Engine],
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
) -> CheckResult:
    """Compare the stream's figures of ``spec`` with each engine's, cut where the stream's were.

    Batch-only metrics (``source: batch``) have no stream figures and are left out."""
    spec = spec.streamed()
    differences: list[Difference] = []
    # Records of one experiment usually share one cut; group metrics by cut, one query per cut.
    by_cut: dict[Any, list[str]] = {}
    for variant in spec.variants:
        for metric in spec.metrics:
            figure = figures.get((variant.name, metric.name))
            if figure is None:
                differences.append(Difference(metric.name, variant.name, "record", None, None, 0, "stream"))
                continue
            cut = figure.closed_upto(allowed_lateness_ms)
            frozen = cut if isinstance(cut, int) else tuple(sorted(cut.items()))
            by_cut.setdefault(frozen, [])
            if metric.name not in by_cut[frozen]:
                by_cut[frozen].append(metric.name)
    for each in engines:
        batch: dict[tuple[str, str, Any], MetricStats] = {}
        for frozen, names in by_cut.items():
            cut = frozen if isinstance(frozen, int) else dict(frozen)
            result = recompute(spec, archive, engine=each, metrics=names, closed_upto=cut)
            for stats in result.stats:
                batch[(stats.variant, stats.metric, frozen)] = stats
        for (variant_name, metric_name), figure in figures.items():
            if spec.metric(metric_name) is None or spec.variant(variant_name) is None:
                continue
            cut = figure.closed_upto(allowed_lateness_ms)
            frozen = cut if isinstance(cut, int) else tuple(sorted(cut.items()))
            differences += compare(figure.stats, batch[(variant_name, metric_name, frozen)], each.name)
    metrics = tuple(
        MetricCheck(
            metric=m.name,
            users=sum(f.stats.n for (v, name), f in figures.items() if name == m.name),
            equal=not any(d.metric == m.name for d in differences),
        )
        for m in spec.metrics
    )
    late = max((f.late_records for f in figures.values()), default=0)
    return CheckResult(
        experiment=spec.id, engines=tuple(e.name for e in engines), metrics=metrics,
        differences=tuple(differences), late_records=late,
    )


def check_experiment(
    *,
    settings: Any,
    experiment: str,
    engines: Sequence[str] = ("duckdb",),
    archive_url: str | None = None,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
) -> CheckResult:
    """The stream's figures of ``experiment`` (topic ``experiment-metrics``) against the archive's.

    The spec is the experiment's newest on the ``experiments`` topic; the archive is
    ``archive_url`` or the archiver's default (``<state dir>/archive``). For the demo:
    ``print("\\n".join(check_experiment(settings=s, experiment=x).lines()))``.
    """
    from experiments.batch.archiver import default_archive_url
    from experiments.batch.specs import read_spec
    from experiments.batch.stream import read_stream_figures

    spec = read_spec(settings, experiment)
    figures = read_stream_figures(settings, experiment)
    archive = Archive(archive_url or default_archive_url(settings))
    chosen = [engine(name, master=settings.spark_master) if name == "spark" else engine(name) for name in engines]
    return check(spec, figures, archive, engines=chosen,
                 allowed_lateness_ms=allowed_lateness_ms)
