"""Experiment reports from ``experiment-metrics`` records: build (pure), render as a table, plot.

:func:`build_report` turns the newest record per ``experiment/variant/metric`` key and the
experiment spec into the statistics engine's input, runs the engine and returns its
output plus what owners read next to it: per-variant exposed users, late records and
multi-variant users, and per metric and variant ``n`` (closed windows), ``in_progress``
(exposed users whose window is still open, not in ``n``) and the raw mean. The SRM check
uses the records' ``exposed`` counts against the spec's weights.

:func:`render_table`, :func:`write_lift_png` and :func:`write_lift_over_time_png` only
read a report (matplotlib's Agg canvas, no global backend switch).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.stats.engine import analyse

_RATIO = ("den_sum", "den_sum_sq", "cross_sum")
_PRE = ("pre_sum", "pre_sum_sq", "pre_cross_sum")


def _newest(records: Iterable[dict], experiment: str) -> dict[tuple[str, str], dict]:
    newest: dict[tuple[str, str], dict] = {}
    for r in records:
        if r.get("experiment") != experiment:
            continue
        key = (r["variant"], r["metric"])
        if key not in newest or r.get("watermark_ts", 0) >= newest[key].get("watermark_ts", 0):
            newest[key] = r
    return newest


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


def build_report(*, spec: dict, records: list[dict]) -> dict:
    """Engine input from the spec and the newest records, the engine's output, and per-variant counts.

    Raises :class:`~experiments.stats.errors.InvalidStatsInput` when the records are inconsistent.
    """
    exp, control = spec["id"], spec["control"]
    variants = [control] + [v for v in spec["variants"] if v != control]
    newest = _newest(records, exp)
    metrics_in = []
    for m in spec["metrics"]:
        recs = {v: newest.get((v, m["name"])) for v in variants}
        with_pre = m["kind"] != "ratio" and all(
            r is None or all(r.get(f) is not None for f in _PRE) for r in recs.values()
        ) and any(r is not None for r in recs.values())
        metric = {"name": m["name"], "kind": m["kind"], "role": m["role"],
                  "variants": [_variant_input(m["kind"], v, recs[v], with_pre) for v in variants]}
        for key in ("direction", "method", "non_inferiority_margin", "mde"):
            if m.get(key) is not None:
                metric[key] = m[key]
        metrics_in.append(metric)
    exposed = {v: max([int(r["exposed"]) for (rv, _), r in newest.items() if rv == v], default=0) for v in variants}
    engine_input: dict[str, Any] = {
        "alpha": spec.get("alpha", 0.05), "control": control, "correction": spec.get("correction", "holm"),
        "expected_weights": {v: float(spec["variants"][v]) for v in variants}, "exposed": exposed,
        "metrics": metrics_in,
    }
    if spec.get("sequential"):
        engine_input["sequential"] = spec["sequential"]
    report = analyse(engine_input)
    for m_out in report["metrics"]:
        for row in m_out["variants"]:
            rec = newest.get((row["name"], m_out["name"]))
            row["in_progress"] = int(rec["in_progress"]) if rec else 0
    report["experiment"] = exp
    report["watermark_ts"] = min((int(r["watermark_ts"]) for r in newest.values()), default=None)
    report["variants"] = {
        v: {
            "weight": float(spec["variants"][v]),
            "exposed": exposed[v],
            "late_records": sum(int(r.get("late_records", 0)) for (rv, _), r in newest.items() if rv == v),
            "multi_variant_users": max(
                [int(r.get("multi_variant_users", 0)) for (rv, _), r in newest.items() if rv == v], default=0
            ),
        }
        for v in variants
    }
    return report


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _interval(d: dict, pct: bool) -> str:
    spec = "+.2%" if pct else "+.4g"
    return f"{_fmt(d['estimate'], spec)} [{_fmt(d['ci_low'], spec)}, {_fmt(d['ci_high'], spec)}]"


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(report: dict) -> str:
    """A terminal table per metric and variant, then the verdict and its reasons."""
    srm = report["srm"]
    status = "ok" if srm["passed"] else "FAILED"
    srm_txt = "no users" if srm["p_value"] is None else f"p={srm['p_value']:.3g} ({status})"
    lines = [
        f"experiment {report.get('experiment', '-')}   as of {_when(report.get('watermark_ts'))}   "
        f"alpha {report['alpha']}   correction {report['correction']}   SRM {srm_txt}",
    ]
    if report.get("sequential"):
        lines.append(f"sequential: {report['sequential']['method']}")
    header = ("variant", "n", "in-progress", "mean", "abs lift [CI]", "rel lift [CI]", "adj p", "status")
    for m in report["metrics"]:
        better = "higher" if m["direction"] == "increase" else "lower"
        extra = f", CUPED variance -{m['cuped']['variance_reduction']:.0%}" if m.get("cuped") else ""
        margin = m.get("non_inferiority_margin")
        extra += f", margin {margin:.2%}" if margin is not None else ""
        lines += ["", f"{m['name']} ({m['kind']}, {m['role']}, {better} is better{extra})"]
        comps = {c["variant"]: c for c in m["comparisons"]}
        rows = [header]
        for v in m["variants"]:
            c = comps.get(v["name"])
            mean = v.get("adjusted_mean", v["mean"])
            rows.append((
                v["name"], str(v["n"]), str(v.get("in_progress", "-")), _fmt(mean),
                _interval(c["absolute"], False) if c else "control", _interval(c["relative"], True) if c else "",
                _fmt(c["adjusted_p_value"], ".3g") if c else "", c["status"] if c else "",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    decision = report["decision"]
    lines += ["", f"verdict: {decision['verdict'].upper().replace('_', ' ')}"]
    lines += [f"  - {r}" for r in decision["reasons"]]
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float):  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def write_lift_png(report: dict, path: str | Path) -> None:
    """Each metric's relative lift per variant with its (corrected) interval."""
    rows = [(m, c) for m in report["metrics"] for c in m["comparisons"]]
    fig = _figure(8.0, 1.0 + 0.5 * max(len(rows), 1))
    ax = fig.add_subplot(1, 1, 1)
    for i, (m, c) in enumerate(rows):
        rel = c["relative"]
        y = len(rows) - 1 - i
        if rel["estimate"] is None:
            continue
        color = {"better": "tab:green", "non_inferior": "tab:green", "worse": "tab:red",
                 "inferior": "tab:red"}.get(c["status"], "tab:gray")
        if rel["ci_low"] is not None:
            ax.plot([rel["ci_low"] * 100, rel["ci_high"] * 100], [y, y], color=color, lw=2)
        ax.plot([rel["estimate"] * 100], [y], "o", color=color)
        if m.get("non_inferiority_margin") is not None:
            sign = -1 if m["direction"] == "increase" else 1
            ax.plot([sign * m["non_inferiority_margin"] * 100], [y], "|", color="black", ms=14)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{m['name']} / {c['variant']}" for m, c in reversed(rows)])
    ax.set_xlabel("relative lift vs control (%), corrected interval; | = non-inferiority margin")
    ax.set_title(f"{report.get('experiment', '')}: {report['decision']['verdict']}")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)


def write_lift_over_time_png(history: list[tuple[int, dict]], path: str | Path) -> None:
    """Relative lift and interval per metric and variant as windows close (x: watermark time)."""
    series: dict[tuple[str, str], list[tuple[dt.datetime, dict]]] = {}
    metrics: list[str] = []
    for ts, report in sorted(history, key=lambda p: p[0]):
        when = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
        for m in report["metrics"]:
            if m["name"] not in metrics:
                metrics.append(m["name"])
            for c in m["comparisons"]:
                series.setdefault((m["name"], c["variant"]), []).append((when, c["relative"]))
    fig = _figure(9.0, 2.5 * max(len(metrics), 1))
    for i, name in enumerate(metrics or ["(no data)"]):
        ax = fig.add_subplot(max(len(metrics), 1), 1, i + 1)
        for (metric, variant), points in series.items():
            if metric != name:
                continue
            pts = [(t, r) for t, r in points if r["estimate"] is not None]
            xs = [t for t, _ in pts]
            line = ax.plot(xs, [r["estimate"] * 100 for _, r in pts], marker=".", label=variant)[0]
            band = [(t, r) for t, r in pts if r["ci_low"] is not None]
            if band:
                ax.fill_between([t for t, _ in band], [r["ci_low"] * 100 for _, r in band],
                                [r["ci_high"] * 100 for _, r in band], color=line.get_color(), alpha=0.2)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel(f"{name}\nrel. lift (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
    fig.axes[-1].set_xlabel("watermark (UTC)")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)
