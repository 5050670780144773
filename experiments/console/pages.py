"""Server-rendered pages: plain HTML with inline CSS and SVG charts, nothing fetched from elsewhere.

The pages render the same dictionaries the JSON API answers (``Console.list_experiments``
and ``Console.detail``), so a page never shows a figure the API does not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea}
table{border-collapse:collapse;width:100%;margin:6px 0} th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid #eceff4;vertical-align:top} th{background:#f5f7fa;font-weight:600}
.s{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600}
.running,.ok,.ship{background:#d9f2e1;color:#145c2e} .stopped,.warn,.inconclusive{background:#fdf0cf;color:#7a5300}
.decided{background:#dfe7fb;color:#1f3f8f} .draft{background:#eceff4;color:#4a5568}
.fail,.do_not_ship{background:#fbdcdc;color:#8a1c1c} .muted{color:#6b7688} code{font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;border:1px solid #eceff4;padding:6px}
figcaption{font-weight:600;font-size:13px} a{color:#1f4fbf}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _badge(text: str | None) -> str:
    value = text or "-"
    return f'<span class="s {escape(value)}">{escape(value)}</span>'


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def list_page(experiments: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><a href=\"/experiments/{escape(e['id'])}\">{escape(e['id'])}</a>"
        f"<div class=muted>{escape(e['description'])}</div></td><td>{_badge(e['status'])}</td>"
        f"<td>{e['version']}</td><td>{_badge(e['srm']['status'])} <span class=muted>{escape(e['srm']['detail'])}"
        f"</span></td><td>{_badge(e['health'])}</td><td>{_badge(e['verdict'])}</td></tr>"
        for e in experiments
    ) or "<tr><td colspan=6 class=muted>no experiment on the experiments topic yet</td></tr>"
    return _page("experiments", "<h1>Experiments</h1><p class=muted>The live experiments of the experiments "
                 "topic; statistics from experiment-metrics.</p><table id=experiments><tr><th>experiment</th>"
                 "<th>status</th><th>version</th><th>SRM</th><th>health</th><th>decision</th></tr>"
                 f"{rows}</table>")


def _params(params: Mapping[str, Any]) -> str:
    """A variant's parameters, a policy by its name: ``ranker=linucb, num_items=5`` (``defaults``: none)."""
    shown = [f"{k}={v['policy'] if isinstance(v, Mapping) else v}" for k, v in sorted(params.items())]
    return ", ".join(shown) or "defaults"


def detail_page(d: Mapping[str, Any]) -> str:
    spec = d["spec"]
    variants = ", ".join(f"{v['name']} ({v['weight']:g}: {_params(v.get('params') or {})})" for v in spec["variants"])
    head = (f"<p><a href=/experiments>all experiments</a></p><h1>{escape(d['id'])} {_badge(d['status'])}</h1>"
            f"<p class=muted>{escape(spec.get('description', ''))} — {escape(spec.get('kind', 'ab'))} on surface "
            f"{escape(spec.get('surface', 'home'))}, version {d['version']}, control "
            f"<b>{escape(spec['control'])}</b>, variants "
            f"{escape(variants)}</p>")
    return _page(d["id"], head + _metrics(d["statistics"]) + _batch_metrics(d["id"], spec)
                 + _lift(d["lift_over_time"]) + _health(d["health"]) + _history(d["history"])
                 + _decision(d["decision"]))


def _batch_metrics(experiment: str, spec: Mapping[str, Any]) -> str:
    """Metrics added after the start: the stream does not compute them, the batch path does."""
    names = [m["name"] for m in spec["metrics"] if m.get("source") == "batch"]
    if not names:
        return ""
    return (f"<p id=batch-metrics class=muted>Computed in batch only, from the archive (added after the start): "
            f"{escape(', '.join(names))} — <code>tandem report {escape(experiment)}</code></p>")


def _metrics(stats: Mapping[str, Any] | None) -> str:
    if not stats or "metrics" not in stats:
        detail = (stats or {}).get("error", "no closed metric window yet")
        return f"<h2>Metrics</h2><p class=muted>{escape(detail)}</p>"
    rows = []
    for metric in stats["metrics"]:
        means = {row["name"]: row for row in metric["variants"]}
        for c in metric["comparisons"]:
            control = means.get(stats["control"], {})
            treated = means.get(c["variant"], {})
            rel = c["relative"]
            rows.append(
                f"<tr><td>{escape(metric['name'])}</td><td>{escape(metric['role'])}</td><td>{escape(c['variant'])}"
                f"</td><td>{_num(control.get('mean'))} ({control.get('n', 0)})</td><td>{_num(treated.get('mean'))} "
                f"({treated.get('n', 0)})</td><td>{_pct(rel['estimate'])}</td><td>[{_pct(rel['ci_low'])}, "
                f"{_pct(rel['ci_high'])}]</td><td>{_num(c['adjusted_p_value'])}</td><td>{_badge(c['status'])}</td></tr>"
            )
    decision = stats.get("decision", {})
    reasons = "".join(f"<li>{escape(r)}</li>" for r in decision.get("reasons", ()))
    return ("<h2>Metrics</h2><table id=metrics><tr><th>metric</th><th>role</th><th>variant</th>"
            "<th>control mean (n)</th><th>variant mean (n)</th><th>lift</th><th>interval</th><th>adj. p</th>"
            f"<th>status</th></tr>{''.join(rows)}</table><p>Rule's verdict now: {_badge(decision.get('verdict'))}"
            f"</p><ul>{reasons}</ul>")


def _lift(series: Sequence[Mapping[str, Any]]) -> str:
    if not series:
        return "<h2>Lift over time</h2><p class=muted>no day with closed windows in every variant yet</p>"
    charts = "".join(
        f"<figure><figcaption>{escape(s['metric'])} — {escape(s['variant'])}</figcaption>"
        f"{lift_svg(s['points'])}</figure>"
        for s in series
    )
    return ("<h2>Lift over time</h2><p class=muted>Cumulative relative lift over the control with its interval, "
            f"at the end of each day since the start (event time).</p><div class=charts id=lift>{charts}</div>")


def lift_svg(points: Sequence[Mapping[str, Any]], *, width: int = 340, height: int = 190) -> str:
    """An SVG chart of the estimate (line, dots) and its interval (band) by day; a dashed zero line."""
    pts = [p for p in points if p["estimate"] is not None]
    if not pts:
        return "<svg width=0 height=0></svg>"
    left, right, top, bottom = 46, 10, 10, 26
    days = [p["day"] for p in pts]
    values = [v for p in pts for v in (p["estimate"], p["ci_low"], p["ci_high"]) if v is not None] + [0.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    d0, d1 = min(days), max(days)

    def x(day: float) -> float:
        return left + (width - left - right) * ((day - d0) / (d1 - d0) if d1 > d0 else 0.5)

    def y(value: float) -> float:
        return top + (height - top - bottom) * (hi - value) / (hi - lo)

    band = [p for p in pts if p["ci_low"] is not None and p["ci_high"] is not None]
    band_path = " ".join(f"{x(p['day']):.1f},{y(p['ci_high']):.1f}" for p in band) + " " + " ".join(
        f"{x(p['day']):.1f},{y(p['ci_low']):.1f}" for p in reversed(band))
    line = " ".join(f"{x(p['day']):.1f},{y(p['estimate']):.1f}" for p in pts)
    dots = "".join(f'<circle class=point cx="{x(p["day"]):.1f}" cy="{y(p["estimate"]):.1f}" r="2.5" fill="#1f4fbf">'
                   f'<title>day {p["day"]}: {_pct(p["estimate"])} [{_pct(p["ci_low"])}, {_pct(p["ci_high"])}]</title>'
                   "</circle>" for p in pts)
    ticks_y = "".join(
        f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:+.0%}</text>'
        f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eceff4"/>'
        for v in (lo + (hi - lo) * k / 4 for k in range(5))
    )
    step = max(1, (d1 - d0) // 6 or 1)
    ticks_x = "".join(f'<text x="{x(d):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{d}</text>'
                      for d in range(d0, d1 + 1, step))
    return (f'<svg class=lift xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{ticks_y}'
            f'<polygon points="{band_path}" fill="#1f4fbf" fill-opacity="0.15"/>'
            f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#8a1c1c" '
            f'stroke-dasharray="4 3"/><polyline points="{line}" fill="none" stroke="#1f4fbf" stroke-width="2"/>'
            f'{dots}{ticks_x}<text x="{left - 4}" y="{height - 8}" font-size="10" text-anchor="end" '
            f'fill="#6b7688">day</text></svg>')


def _health(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{escape(c['name'])}</td><td>{_badge(c['status'])}</td><td>{escape(c['detail'])}</td></tr>"
                   for c in checks)
    return ("<h2>Health checks</h2><p class=muted>Valid under continuous monitoring; a failed SRM or guardrail "
            f"stops a running experiment by itself.</p><table id=health><tr><th>check</th><th>status</th>"
            f"<th>detail</th></tr>{rows}</table>")


def _history(history: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{i + 1}</td><td>{_badge(t['status'])}</td><td>{escape(t['who'])}</td>"
                   f"<td>{_when(t['at'])}</td><td>{escape(t['why'])}</td></tr>" for i, t in enumerate(history))
    rows = rows or "<tr><td colspan=5 class=muted>published before the lifecycle: no recorded change</td></tr>"
    return (f"<h2>Status history</h2><table id=history><tr><th>version</th><th>status</th><th>who</th><th>when</th>"
            f"<th>why</th></tr>{rows}</table>")


def _decision(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "<h2>Decision</h2><p class=muted id=decision>not decided yet</p>"
    reasons = "".join(f"<li>{escape(r)}</li>" for r in record["reasons"])
    return (f"<h2>Decision</h2><div id=decision><p>{_badge(record['verdict'])} by <b>{escape(record['decided_by'])}"
            f"</b> at {_when(record['decided_at'])} on spec version {record['spec_version']}"
            f"{' (forced while running)' if record['forced'] else ''}</p><p>{escape(record['note'])}</p>"
            f"<ul>{reasons}</ul><p class=muted>rule: {escape(record['rule'])} — record "
            f"<code>{escape(record['decision_id'])}</code></p></div>")
