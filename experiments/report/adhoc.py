"""The owner's report of metrics added after the start: computed in batch, from the archive.

A metric added to a running experiment (``tandem experiments add-metric``, ``source: batch``)
has no ``experiment-metrics`` records: the aggregator had closed windows without it. The
report computes it on DuckDB over the event archive for every user exposed so far, windows
closed up to the archive's watermark minus the aggregator's allowed lateness, and shows it
apart from the configured metrics, with its source, the spec version that added it and the
event time it covers. It is analysed on its own (its own correction family): an ad-hoc metric
informs the owner, it does not move the configured metrics' verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from experiments.report.render import Report, build_report, metric_heading, metric_rows, when
from experiments.spec import ExperimentSpec

#: The aggregator's default allowed lateness: the batch cut mirrors the stream's.
ALLOWED_LATENESS_MS = 30 * 60 * 1000


@dataclass(frozen=True)
class AdhocMetrics:
    """The batch-only metrics of an experiment, as recomputed from the archive."""

    experiment: str
    source: str  # always "batch"
    engine: str
    archive: str
    added_in: Mapping[str, int]  # metric -> the spec version that added it
    covers_from: int  # event time: the experiment's start (first exposures from then on)
    closed_upto: int | None  # event time up to which windows are closed; None: nothing archived yet
    watermark: int | None  # the archive's watermark the cut was taken at
    report: Report | None  # None while nothing is archived

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "engine": self.engine, "archive": self.archive,
            "added_in": dict(self.added_in), "covers_from": self.covers_from, "closed_upto": self.closed_upto,
            "watermark_ts": self.watermark,
            "metrics": [] if self.report is None else self.report.to_dict()["metrics"],
        }


def adhoc_metrics(settings: Any, spec: ExperimentSpec, *, versions: list[ExperimentSpec],
                  allowed_lateness_ms: int = ALLOWED_LATENESS_MS) -> AdhocMetrics | None:
    """``spec``'s batch-only metrics on DuckDB over the archive (None when it has none).

    ``versions`` are the spec's versions on the topic (for the version that added each metric)."""
    if not spec.batch_metrics:
        return None
    from experiments.batch.archive import Archive
    from experiments.batch.archiver import default_archive_url
    from experiments.batch.engines import DuckDBEngine
    from experiments.batch.recompute import recompute
    from experiments.batch.specs import added_versions
    from experiments.report.owner import report_spec

    url = default_archive_url(settings)
    archive, engine = Archive(url), DuckDBEngine()
    added = {name: v.version for name, v in added_versions(versions).items()}
    watermark = engine.watermark(archive)
    if watermark is None:
        return AdhocMetrics(spec.id, "batch", engine.name, url, added, spec.start, None, None, None)
    result = recompute(spec, archive, engine=engine, metrics=[m.name for m in spec.batch_metrics],
                       watermark=watermark, allowed_lateness_ms=allowed_lateness_ms)
    report = build_report(spec=report_spec(spec, source="batch"), records=result.to_stats_input())
    return AdhocMetrics(spec.id, result.source, result.engine, url, added, result.covers_from, result.closed_upto,
                        result.watermark, report)


def render_adhoc(adhoc: AdhocMetrics) -> str:
    """The table's section of batch-only metrics: source, time covered, one block per metric."""
    head = (f"ad-hoc metrics (added after the start): source batch ({adhoc.engine} over the archive "
            f"{adhoc.archive})")
    if adhoc.report is None:
        names = ", ".join(sorted(adhoc.added_in))
        return f"{head}\n  {names}: nothing archived yet (run `tandem archive run`)\n"
    lines = [head, f"  covers event time {when(adhoc.covers_from)} to {when(adhoc.closed_upto)}: users first "
                   f"exposed since the start whose window closed by then (archive watermark "
                   f"{when(adhoc.watermark)} minus the allowed lateness)"]
    for metric in adhoc.report.analysis.metrics:
        version = adhoc.added_in.get(metric.name)
        added = f", added in spec version {version}" if version is not None else ""
        lines += ["", f"{metric_heading(metric)} [source batch{added}]",
                  *metric_rows(metric, adhoc.report.in_progress)]
    return "\n".join(lines) + "\n"
