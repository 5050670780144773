"""``tandem report EXPERIMENT``: what an experiment owner reads, from the topics alone.

The spec comes from the ``experiments`` topic and the figures from
``experiment-metrics`` (newest record per key: the embedded broker does not
compact). Every earlier version of the records still on the topic gives the lift
over time as windows close; on a compacting cluster that history is whatever
compaction has not removed yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.aggregation.stats import merge_partials
from experiments.errors import UnknownExperiment
from experiments.report.render import Report, build_report, render_table, write_lift_over_time_png, write_lift_png
from experiments.spec import ExperimentSpec, MetricSource, spec_from_json
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EXPERIMENT_METRICS, EXPERIMENTS
from infra.settings import Settings

#: The statistics engine's names for the spec's corrections.
CORRECTIONS = {"none": "none", "bonferroni": "bonferroni", "holm": "holm", "benjamini-hochberg": "bh"}
MAX_HISTORY_POINTS = 40


@dataclass(frozen=True)
class ReportFiles:
    table: str
    report: dict[str, Any]  # the JSON written to json_path
    json_path: Path
    lift_png: Path
    lift_over_time_png: Path


def report_spec(spec: ExperimentSpec, *, source: MetricSource = "stream") -> dict[str, Any]:
    """The spec as ``experiments.report.render.build_report`` reads it, with the metrics of one source:
    the stream's (the ``experiment-metrics`` records) or the batch path's (``experiments.report.adhoc``)."""
    return {
        "id": spec.id,
        "control": spec.control,
        "variants": {variant.name: variant.weight for variant in spec.variants},
        "alpha": spec.alpha,
        "correction": CORRECTIONS[spec.correction],
        "metrics": [
            {
                "name": metric.name,
                "kind": metric.kind,
                "role": metric.role,
                "direction": metric.direction,
                "non_inferiority_margin": metric.margin,
            }
            for metric in spec.metrics
            if metric.source == source
        ],
    }


def read_spec(settings: Settings, experiment: str) -> ExperimentSpec:
    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENTS)))
    record = newest.get(experiment.encode())
    if record is None or record.value is None:
        raise UnknownExperiment(f"experiment {experiment!r} is not on {settings.topic(EXPERIMENTS)}")
    return spec_from_json(record.value)


def history(spec: dict[str, Any], versions: list[dict[str, Any]]) -> list[tuple[int, Report]]:
    """The report as of each watermark the records went through (at most ``MAX_HISTORY_POINTS``)."""
    watermarks = sorted({int(record["watermark_ts"]) for record in versions})
    if len(watermarks) > MAX_HISTORY_POINTS:
        step = len(watermarks) / MAX_HISTORY_POINTS
        watermarks = [watermarks[int(i * step)] for i in range(MAX_HISTORY_POINTS)] + [watermarks[-1]]
    points = []
    for watermark in watermarks:
        known = [record for record in versions if int(record["watermark_ts"]) <= watermark]
        if all(record["n"] > 1 for record in _newest_only(known)):
            points.append((watermark, build_report(spec=spec, records=known)))
    return points


def _newest_only(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The totals: the newest record of each partition per (variant, metric), summed."""
    return merge_partials(records)


def run_report(*, settings: Settings, experiment: str, out_dir: Path) -> ReportFiles:
    """The report of the stream's figures; metrics added after the start follow, computed in batch
    (``experiments.report.adhoc``)."""
    from experiments.lifecycle import newest_versions, read_versions
    from experiments.report.adhoc import adhoc_metrics, render_adhoc

    versions_on_topic = read_versions(settings, experiment)
    current = newest_versions(versions_on_topic).get(experiment) or read_spec(settings, experiment)
    spec = report_spec(current)
    versions = [
        json.loads(record.value)
        for record in read_topic(settings, settings.topic(EXPERIMENT_METRICS))
        if record.value and record.key and record.key.decode().startswith(f"{experiment}/")
    ]
    if not versions:
        raise UnknownExperiment(f"no metrics for {experiment!r} on {settings.topic(EXPERIMENT_METRICS)} yet")
    report = build_report(spec=spec, records=versions)
    report_json = report.to_dict()
    adhoc = adhoc_metrics(settings, current, versions=versions_on_topic)
    table = render_table(report)
    if adhoc is not None:
        report_json["adhoc"] = adhoc.to_dict()
        table += "\n" + render_adhoc(adhoc)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{experiment}.json"
    json_path.write_text(json.dumps(report_json, indent=2, default=str))
    lift_png = out_dir / f"{experiment}-lift.png"
    write_lift_png(report, lift_png)
    over_time_png = out_dir / f"{experiment}-lift-over-time.png"
    write_lift_over_time_png(history(spec, versions), over_time_png)
    return ReportFiles(table, report_json, json_path, lift_png, over_time_png)
