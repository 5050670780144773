"""The report's decision per variant against the simulator's truth, and whether the run can tell.

The truth (``infra.simulation.truth``) is exact: a perfect report's verdict per variant. A real
report decides with tests at level ``alpha`` on a sample, so where a variant's true effect lies
near a boundary of the rule (zero for a success metric, the margin for a guardrail) a report of
this size decides it by chance: a true tie is called worse up to ``alpha`` of the time, a
guardrail a little beyond its margin is shown beyond it about half the time. No rule at level
0.05 matches such a truth in all but 1e-4 of runs. So the check says, per variant, whether the
truth is **decisive** at this run's size, with the rule the report uses:

- ``do_not_ship`` is decisive when some metric that makes it so lies at least ``z_test +
  Z_MISS`` of the report's standard errors past its boundary (``z_test``: the one-sided
  critical value of the test that finds it, at ``alpha`` for a guardrail's margin, at
  ``alpha / K`` for a deterioration, ``K`` the comparisons of the experiment, Bonferroni being
  no easier than Holm);
- ``ship`` is decisive when a better success metric lies that far above zero (at ``alpha / S``,
  ``S`` the success comparisons), every guardrail that far inside its margin (at ``alpha``), and
  every success metric at least ``Z_MISS - z(alpha / K)`` above zero (no deterioration by chance);
- ``inconclusive`` (no success metric) is never decisive.

``Z_MISS`` = 3.72: a normal estimate misses by that many standard errors with probability 1e-4.
A decisive truth must be matched (a mismatch is a defect, not chance); a near tie is shown with
the report's verdict and how many users would make it decisive, and is not counted against the
report. The report's standard error of a relative effect is read off its interval; the
estimate's noise around the truth is at most that (the truth keeps the realized sessions).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import special

#: Standard errors by which a normal estimate misses with probability 1e-4.
Z_MISS = 3.72


def _isf(q: float) -> float:
    return float(-special.ndtri(q))


def _se(interval: dict[str, Any], level: float | None) -> float:
    low, high = interval.get("ci_low"), interval.get("ci_high")
    if low is None or high is None or level is None or not 0.0 < level < 1.0:
        return math.nan
    return (float(high) - float(low)) / (2.0 * _isf((1.0 - level) / 2.0))


def _distances(report: dict[str, Any], truth: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """Per metric: the true relative effect, its boundary, the report's standard error and the distance
    (good direction positive) of the truth from the boundary in standard errors."""
    rows = []
    for metric in report["metrics"]:
        true = truth["metrics"].get(metric["name"])
        comparison = next((c for c in metric["comparisons"] if c["variant"] == variant), None)
        if true is None or comparison is None or variant not in true["effects"]:
            continue
        relative = float(true["effects"][variant]["relative"])
        sign = 1.0 if metric["direction"] == "increase" else -1.0
        boundary = -(true["margin"] or 0.0) if true["role"] == "guardrail" else 0.0
        se = _se(comparison["relative"], comparison.get("interval_level"))
        rows.append({"metric": metric["name"], "role": true["role"], "verdict": true["effects"][variant]["verdict"],
                     "relative": relative, "boundary": boundary, "se": se,
                     "distance": (sign * relative - boundary) / se if se > 0 else math.nan})
    return rows


def decisive(report: dict[str, Any], truth: dict[str, Any], variant: str, *, alpha: float) -> dict[str, Any]:
    """Whether this run can tell ``variant``'s true decision (module doc), the distances it read, and
    the users per arm that would make it decisive (None when no size would, e.g. an exact tie)."""
    decision = truth["variants"][variant]["decision"]
    rows = _distances(report, truth, variant)
    treatments = max(len(truth["variants"]), 1)
    comparisons = max(len(rows) * treatments, 1)
    successes = max(sum(r["role"] == "success" for r in rows) * treatments, 1)
    guardrail_z = _isf(alpha) + Z_MISS

    def needed(row: dict[str, Any]) -> float:
        if row["role"] == "guardrail":
            return guardrail_z
        return _isf(alpha / (comparisons if decision == "do_not_ship" else successes)) + Z_MISS

    # each row's distance over what it needs: >= 1 means decisive on that metric
    if decision == "do_not_ship":
        deciding = [r for r in rows if r["verdict"] == "worse"]
        ratio = max((-r["distance"] / needed(r) for r in deciding if math.isfinite(r["distance"])), default=math.nan)
    elif decision == "ship":
        better = max((r["distance"] / needed(r) for r in rows
                      if r["verdict"] == "better" and math.isfinite(r["distance"])), default=math.nan)
        inside = min((r["distance"] / needed(r) for r in rows if r["role"] == "guardrail"), default=math.inf)
        # and no success metric near enough zero for the deterioration test to call it worse by chance
        clear = min((r["distance"] / (Z_MISS - _isf(alpha / comparisons)) for r in rows if r["role"] == "success"),
                    default=math.inf)
        parts = (better, inside, clear)
        ratio = math.nan if any(math.isnan(x) for x in parts) else min(parts)
    else:
        ratio = math.nan
    is_decisive = math.isfinite(ratio) and ratio >= 1.0
    # the standard errors shrink as 1 / sqrt(n): n * (1 / ratio)^2 users per arm would reach the threshold
    return {"decisive": is_decisive, "margin_ratio": ratio if math.isfinite(ratio) else None, "metrics": rows,
            "size_factor": (1.0 / ratio) ** 2 if math.isfinite(ratio) and ratio > 0 else None}


def decisions_against_truth(reports: dict[str, dict[str, Any]], truths: dict[str, dict[str, Any]],
                            ) -> list[dict[str, Any]]:
    """Per experiment and treatment variant: the report's decision, the truth's, whether the truth is
    decisive at this size and whether they match. A holdout is reported, not decided."""
    rows = []
    for experiment, report in reports.items():
        truth = truths[experiment]
        decided = truth["kind"] != "holdout"
        alpha = float(report.get("alpha", 0.05))
        for variant, verdict in report["decision"]["variants"].items():
            true = truth["variants"][variant]["decision"]
            tell = decisive(report, truth, variant, alpha=alpha)
            rows.append({
                "experiment": experiment, "variant": variant, "kind": truth["kind"],
                "decision": verdict["verdict"], "truth": true, "decided": decided,
                "decisive": decided and tell["decisive"],
                "matches": (verdict["verdict"] == true) if decided else None,
                "margin_ratio": tell["margin_ratio"], "size_factor": tell["size_factor"],
                "srm_passed": report["srm"]["passed"],
                "true_effects": {name: m["effects"][variant]["relative"] for name, m in truth["metrics"].items()
                                 if variant in m["effects"]},
            })
    return rows


#: The metrics of the per-variant table: the success metric the bandits chase and the guardrail they risk.
SHOWN = ("plays_7d", "retention_d7")


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1%}"


def _effect(report: dict[str, Any], metric: str, variant: str) -> str:
    for result in report["metrics"]:
        if result["name"] != metric:
            continue
        for comparison in result["comparisons"]:
            if comparison["variant"] == variant:
                relative = comparison["relative"]
                level = comparison.get("interval_level")
                shown = f" {level:.0%}" if level else ""
                return (f"{_pct(relative.get('estimate'))} [{_pct(relative.get('ci_low'))}, "
                        f"{_pct(relative.get('ci_high'))}{shown}]")
    return "n/a"


#: What the gate's reward behind a calibration row measures, per decision (experiments.ope.calibration).
REWARDS = {"short_term": "plays", "long_term": "surrogate's value"}


def _predicted(predictions: dict[tuple[str, str], Any], metric: str, variant: str) -> str:
    row = predictions.get((variant, metric))
    if row is None:
        return "none (no policy of its own)"
    return (f"{REWARDS.get(row.reward, row.reward)} per decision {_pct(row.predicted)} "
            f"[{_pct(row.predicted_low)}, {_pct(row.predicted_high)}]")


def describe_row(row: dict[str, Any]) -> str:
    """One line of the check: the report's decision, the truth's, and whether it is decisive here."""
    head = f"{row['experiment']}/{row['variant']}: report {row['decision']}; truth {row['truth']}"
    if not row["decided"]:
        return f"{head} (holdout: reported, not decided)"
    if row["decisive"]:
        return f"{head}: {'match' if row['matches'] else 'MISMATCH'} (the truth is decisive at this size)"
    factor = row["size_factor"]
    grow = f"; about {factor:.1f}x the users per arm would make it decisive" if factor else ""
    return (f"{head}: {'the same' if row['matches'] else 'differs'}, not checked: the truth is not decisive at "
            f"this size (its deciding effect lies {_ratio(row['margin_ratio'])} of the distance past the rule's "
            f"boundary that a miss below 1e-4 needs){grow}")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def render_variants(report: dict[str, Any], truth: dict[str, Any], rows: list[dict[str, Any]],
                    predictions: dict[tuple[str, str], Any] | None = None) -> list[str]:
    """Per treatment variant against the control: plays and retention (the report's relative effect and
    interval, the truth), the off-policy prediction made before it served (``predictions``: calibration
    rows by (variant, metric)), and the decisions."""
    predictions = predictions or {}
    lines = [f"{report['experiment']} per variant against {report.get('control', 'control')}"
             f" (relative effects; the report's intervals at their corrected level):"]
    for row in rows:
        variant = row["variant"]
        lines.append(f"  {variant} ({truth['units'].get(variant, 0)} users)")
        for metric in SHOWN:
            if metric not in row["true_effects"]:
                continue
            lines.append(f"    {metric:<13} report {_effect(report, metric, variant):<34} truth "
                         f"{_pct(row['true_effects'][metric]):<8} OPE before serving, "
                         f"{_predicted(predictions, metric, variant)}")
        lines.append(f"    decision      {describe_row(row).split(': ', 1)[1]}")
    return lines
