"""Experiment reports from ``experiment-metrics`` records: build (pure), render as a table, plot.

:func:`build_report` turns the newest record per ``experiment/variant/metric`` key and the
experiment spec into the statistics engine's input, runs the engine and returns a
:class:`Report`: the engine's :class:`~experiments.stats.results.Analysis` plus what owners
read next to it: per-variant exposed users, late records and multi-variant users, and per
metric and variant ``in_progress`` (exposed users whose window is still open, not in the
engine's ``n``). The SRM check uses the records' ``exposed`` counts against the spec's weights.
:meth:`Report.to_dict` is the JSON report: the engine's JSON with ``in_progress`` in each
variant row and ``experiment``, ``watermark_ts`` and ``variants`` at the top.

:func:`render_table`, :func:`write_lift_png` and :func:`write_lift_over_time_png` only
read a report (matplotlib's Agg canvas, no global backend switch).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.aggregation.stats import merge_partials
from experiments.stats.engine import analyse
from experiments.stats.results import Analysis, Comparison, Interval, MetricResult, Result

_RATIO = ("den_sum", "den_sum_sq", "cross_sum")
_PRE = ("pre_sum", "pre_sum_sq", "pre_cross_sum")


def _newest(records: Iterable[dict], experiment: str) -> dict[tuple[str, str], dict]:
    """The total per (variant, metric): the newest partial of each partition, summed."""
    newest: dict[tuple[str, str, Any], dict] = {}
    for r in records:
        if r.get("experiment") != experiment:
            continue
        key = (r["variant"], r["metric"], r.get("partition"))
        if key not in newest or r.get("watermark_ts", 0) >= newest[key].get("watermark_ts", 0):
            newest[key] = r
    return {(r["variant"], r["metric"]): r for r in merge_partials(list(newest.values()))}


def _variant_input(kind: str, name: str, rec: dict | None, with_pre: bool) -> dict:
    if rec is None:
        out: dict[str, Any] = {"name": name, "n": 0, "sum": 0.0}
        if kind != "proportion":
            out["sum_sq"] = 0.0
        if kind == "ratio":
            out.update(dict.fromkeys(_RATIO, 0.0))
        if with_pre:
            out.update(dict.fromkeys(_PRE, 0.0))
        return out
    out = {"name": name, "n": int(rec["n"]), "sum": float(rec["sum"])}
    if kind != "proportion":
        out["sum_sq"] = float(rec["sum_sq"])
    if kind == "ratio":
        out.update({f: float(rec[f]) for f in _RATIO})
    if with_pre:
        out.update({f: float(rec[f]) for f in _PRE})
    return out


@dataclass(frozen=True)
class VariantExposure(Result):
    """One variant's weight in the spec and its users as the records count them."""

    weight: float
    exposed: int
    late_records: int
    multi_variant_users: int


@dataclass(frozen=True)
class Report:
    """The engine's analysis of an experiment's newest records, and the counts owners read beside it."""

    experiment: str
    watermark_ts: int | None  # the oldest of the newest records' watermarks
    analysis: Analysis
    variants: Mapping[str, VariantExposure]
    in_progress: Mapping[tuple[str, str], int]  # (metric, variant) -> users whose window is still open

    def to_dict(self) -> dict[str, Any]:
        out = self.analysis.to_dict()
        for metric in out["metrics"]:
            for row in metric["variants"]:
                row["in_progress"] = self.in_progress[(metric["name"], row["name"])]
        out["experiment"] = self.experiment
        out["watermark_ts"] = self.watermark_ts
        out["variants"] = {name: exposure.to_dict() for name, exposure in self.variants.items()}
        return out


def _metric_input(m: dict, variants: list[str], newest: dict[tuple[str, str], dict]) -> dict:
    recs = {v: newest.get((v, m["name"])) for v in variants}
    with_pre = m["kind"] != "ratio" and all(
        r is None or all(r.get(f) is not None for f in _PRE) for r in recs.values()
    ) and any(r is not None for r in recs.values())
    metric = {"name": m["name"], "kind": m["kind"], "role": m["role"],
              "variants": [_variant_input(m["kind"], v, recs[v], with_pre) for v in variants]}
    for key in ("direction", "method", "non_inferiority_margin", "mde"):
        if m.get(key) is not None:
            metric[key] = m[key]
    return metric


def _exposure(spec: dict, variant: str, newest: dict[tuple[str, str], dict]) -> VariantExposure:
    recs = [r for (rv, _), r in newest.items() if rv == variant]
    return VariantExposure(
        weight=float(spec["variants"][variant]),
        exposed=max([int(r["exposed"]) for r in recs], default=0),
        late_records=sum(int(r.get("late_records", 0)) for r in recs),
        multi_variant_users=max([int(r.get("multi_variant_users", 0)) for r in recs], default=0),
    )


def build_report(*, spec: dict, records: list[dict]) -> Report:
    """Engine input from the spec and the newest records, the engine's analysis, and per-variant counts.

    Raises :class:`~experiments.stats.errors.InvalidStatsInput` when the records are inconsistent.
    """
    exp, control = spec["id"], spec["control"]
    variants = [control] + [v for v in spec["variants"] if v != control]
    newest = _newest(records, exp)
    exposure = {v: _exposure(spec, v, newest) for v in variants}
    engine_input: dict[str, Any] = {
        "alpha": spec.get("alpha", 0.05), "control": control, "correction": spec.get("correction", "holm"),
        "expected_weights": {v: exposure[v].weight for v in variants},
        "exposed": {v: exposure[v].exposed for v in variants},
        "metrics": [_metric_input(m, variants, newest) for m in spec["metrics"]],
        # a report is rebuilt at every update of a live experiment: the SRM test must stay valid under peeking
        "srm_test": "anytime_valid",
    }
    if spec.get("sequential"):
        engine_input["sequential"] = spec["sequential"]
    analysis = analyse(engine_input)
    in_progress: dict[tuple[str, str], int] = {}
    for metric in analysis.metrics:
        for row in metric.variants:
            rec = newest.get((row.name, metric.name))
            in_progress[(metric.name, row.name)] = int(rec["in_progress"]) if rec else 0
    return Report(
        experiment=exp,
        watermark_ts=min((int(r["watermark_ts"]) for r in newest.values()), default=None),
        analysis=analysis, variants=exposure, in_progress=in_progress,
    )


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _interval(effect: Interval, pct: bool) -> str:
    spec = "+.2%" if pct else "+.4g"
    return f"{_fmt(effect.estimate, spec)} [{_fmt(effect.ci_low, spec)}, {_fmt(effect.ci_high, spec)}]"


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(report: Report) -> str:
    """A terminal table per metric and variant, then the verdict and its reasons."""
    analysis = report.analysis
    srm = analysis.srm
    status = "ok" if srm.passed else "FAILED"
    srm_txt = "no users" if srm.p_value is None else (
        f"p={srm.p_value:.3g}, anytime-valid p={_fmt(srm.anytime_p_value, '.3g')} ({status})")
    lines = [
        f"experiment {report.experiment}   as of {when(report.watermark_ts)}   "
        f"alpha {analysis.alpha}   correction {analysis.correction}   SRM {srm_txt}",
    ]
    if analysis.sequential is not None:
        lines.append(f"sequential: {analysis.sequential.method}")
    for m in analysis.metrics:
        lines += ["", metric_heading(m), *metric_rows(m, report.in_progress)]
    decision = analysis.decision
    lines += ["", f"verdict: {decision.verdict.upper().replace('_', ' ')}"]
    lines += [f"  - {r}" for r in decision.reasons]
    return "\n".join(lines) + "\n"


def metric_heading(m: MetricResult) -> str:
    better = "higher" if m.direction == "increase" else "lower"
    extra = f", CUPED variance -{m.cuped.variance_reduction:.0%}" if m.cuped is not None else ""
    extra += f", margin {m.non_inferiority_margin:.2%}" if m.non_inferiority_margin is not None else ""
    return f"{m.name} ({m.kind}, {m.role}, {better} is better{extra})"


def metric_rows(m: MetricResult, in_progress: Mapping[tuple[str, str], int]) -> list[str]:
    """One aligned row per variant: the control's values, each treatment's comparison."""
    header = ("variant", "n", "in-progress", "mean", "abs lift [CI]", "rel lift [CI]", "adj p", "status")
    comps = {c.variant: c for c in m.comparisons}
    rows = [header]
    for v in m.variants:
        c = comps.get(v.name)
        mean = v.adjusted_mean if m.cuped is not None else v.mean
        rows.append((
            v.name, str(v.n), str(in_progress[(m.name, v.name)]), _fmt(mean),
            _interval(c.absolute, False) if c else "control", _interval(c.relative, True) if c else "",
            _fmt(c.adjusted_p_value, ".3g") if c else "", c.status if c else "",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _figure(width: float, height: float):  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


_STATUS_COLORS = {"better": "tab:green", "non_inferior": "tab:green", "worse": "tab:red", "inferior": "tab:red"}


def write_lift_png(report: Report, path: str | Path) -> None:
    """Each metric's relative lift per variant with its (corrected) interval."""
    rows: list[tuple[MetricResult, Comparison]] = [(m, c) for m in report.analysis.metrics for c in m.comparisons]
    fig = _figure(8.0, 1.0 + 0.5 * max(len(rows), 1))
    ax = fig.add_subplot(1, 1, 1)
    for i, (m, c) in enumerate(rows):
        rel = c.relative
        y = len(rows) - 1 - i
        if rel.estimate is None:
            continue
        color = _STATUS_COLORS.get(c.status, "tab:gray")
        if rel.ci_low is not None and rel.ci_high is not None:
            ax.plot([rel.ci_low * 100, rel.ci_high * 100], [y, y], color=color, lw=2)
        ax.plot([rel.estimate * 100], [y], "o", color=color)
        if m.non_inferiority_margin is not None:
            sign = -1 if m.direction == "increase" else 1
            ax.plot([sign * m.non_inferiority_margin * 100], [y], "|", color="black", ms=14)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{m.name} / {c.variant}" for m, c in reversed(rows)])
    ax.set_xlabel("relative lift vs control (%), corrected interval; | = non-inferiority margin")
    ax.set_title(f"{report.experiment}: {report.analysis.decision.verdict}")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)


def write_lift_over_time_png(history: list[tuple[int, Report]], path: str | Path) -> None:
    """Relative lift and interval per metric and variant as windows close (x: watermark time)."""
    series: dict[tuple[str, str], list[tuple[dt.datetime, Interval]]] = {}
    metrics: list[str] = []
    for ts, report in sorted(history, key=lambda p: p[0]):
        when = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
        for m in report.analysis.metrics:
            if m.name not in metrics:
                metrics.append(m.name)
            for c in m.comparisons:
                series.setdefault((m.name, c.variant), []).append((when, c.relative))
    fig = _figure(9.0, 2.5 * max(len(metrics), 1))
    for i, name in enumerate(metrics or ["(no data)"]):
        ax = fig.add_subplot(max(len(metrics), 1), 1, i + 1)
        for (metric, variant), points in series.items():
            if metric == name:
                _plot_lift_series(ax, variant, points)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel(f"{name}\nrel. lift (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
    fig.axes[-1].set_xlabel("watermark (UTC)")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)


def _plot_lift_series(ax: Any, variant: str, points: list[tuple[dt.datetime, Interval]]) -> None:
    """One variant's relative lift over time, its interval as a band where there is one."""
    pts = [(t, r.estimate) for t, r in points if r.estimate is not None]
    line = ax.plot([t for t, _ in pts], [e * 100 for _, e in pts], marker=".", label=variant)[0]
    band = [(t, r.ci_low, r.ci_high) for t, r in points
            if r.estimate is not None and r.ci_low is not None and r.ci_high is not None]
    if band:
        ax.fill_between([t for t, _, _ in band], [low * 100 for _, low, _ in band],
                        [high * 100 for _, _, high in band], color=line.get_color(), alpha=0.2)
