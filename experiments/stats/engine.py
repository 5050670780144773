"""``analyse(input) -> output``: the whole statistics engine on sufficient statistics.

Steps: validate (:mod:`.inputs`); per metric build one arm per variant (mean,
proportion, ratio, CUPED-adjusted when ``pre_*`` fields are given); compare every
treatment variant with the control (superiority, or non-inferiority for a guardrail
with a margin); correct the p-values across all metrics and arms; build intervals at the
levels consistent with the corrected decisions; check the sample ratio; decide
(:mod:`.decision`).

Tests: success metrics and guardrails without a margin get a two-sided test of the
absolute difference (Welch's t by default for means, z for proportions and ratios);
its interval is exactly consistent with the decision, the relative interval (delta
method) approximately. A guardrail with a relative margin gets the one-sided
non-inferiority test on the relative lift, ``p_value`` is that one-sided p-value, and
its intervals are two-sided at level ``1 - 2 alpha_i``. With ``sequential`` every test
uses the sequential reference (normal approximation) instead of the fixed-horizon one.
``power`` (when the metric has ``mde``, a relative effect) is for a two-sided z test at
the nominal alpha with the control's per-user standard deviation.
"""

from __future__ import annotations

import math
from typing import Any

from experiments.stats import power as pw
from experiments.stats.correction import adjust
from experiments.stats.cuped import CupedStats, cuped_adjust
from experiments.stats.decision import Finding, decide
from experiments.stats.inference import FixedHorizon, Reference
from experiments.stats.inputs import MetricInput, StatsInput, parse_input
from experiments.stats.means import Arm, Effect, compare, mean_arm, proportion_arm
from experiments.stats.noninferiority import beyond_margin, non_inferiority_test
from experiments.stats.ratio import ratio_arm
from experiments.stats.sequential import AlwaysValid, GroupSequential, normalize_looks
from experiments.stats.srm import srm_check

DEFAULT_TUNING_N = 10_000


def _num(x: Any) -> float | None:
    """JSON-safe float: ``None`` for NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _given(value: float | None) -> float:
    """A field ``inputs`` has already required (all pre_* of a CUPED metric, a group-sequential
    design's information fraction); None here is a bug, not bad input."""
    if value is None:
        raise AssertionError("a field the input validation requires is missing")
    return value


def _arms(m: MetricInput) -> tuple[dict[str, Arm], dict | None]:
    if m.variants[0].pre_sum is not None and m.kind != "ratio":
        stats = [
            CupedStats(v.n, v.sum, v.sum if v.sum_sq is None else v.sum_sq,
                       _given(v.pre_sum), _given(v.pre_sum_sq), _given(v.pre_cross_sum))
            for v in m.variants
        ]
        res = cuped_adjust(stats)
        cuped = {"theta": _num(res.theta), "variance_reduction": _num(res.variance_reduction)}
        return {v.name: a for v, a in zip(m.variants, res.arms, strict=True)}, cuped
    arms = {}
    for v in m.variants:
        if v.n < 2:
            arms[v.name] = Arm(n=v.n, mean=v.sum / v.n if v.n else math.nan, se2=math.nan)
        elif m.kind == "mean" or (m.kind == "proportion" and m.method == "welch"):
            arms[v.name] = mean_arm(v.n, v.sum, v.sum if v.sum_sq is None else v.sum_sq)
        elif m.kind == "proportion":
            arms[v.name] = proportion_arm(v.n, v.sum)
        else:
            arms[v.name] = ratio_arm(v.n, v.sum, v.sum_sq, v.den_sum, v.den_sum_sq, v.cross_sum)
    return arms, None


def _variant_out(m: MetricInput, v: Any, arm: Arm, adjusted: bool) -> dict:
    """Per-variant summary: the raw metric value and, with CUPED, the adjusted one."""
    den = v.den_sum if m.kind == "ratio" else v.n
    out = {"name": v.name, "n": v.n, "mean": _num(v.sum / den) if den else None}
    if adjusted:
        out["adjusted_mean"] = _num(arm.mean)
    return out


def _method(m: MetricInput) -> str:
    if m.kind == "ratio":
        return "z"
    return m.method or ("welch" if m.kind == "mean" else "z")


def _reference(inp: StatsInput, eff: Effect, n_total: int) -> Reference:
    seq = inp.sequential
    if seq is None:
        return FixedHorizon(eff.df)
    if seq.method == "group_sequential":
        return GroupSequential(normalize_looks(seq.looks or [], _given(seq.information_fraction)))
    return AlwaysValid((seq.tuning_n or DEFAULT_TUNING_N) / n_total)


def _usable(eff: Effect) -> bool:
    vals = (eff.estimate, eff.se, eff.relative, eff.relative_se)
    return all(math.isfinite(float(x)) for x in vals) and eff.se > 0 and eff.relative_se > 0


def _power(m: MetricInput, control: Arm, treatment: Arm, alpha: float) -> dict | None:
    if m.mde is None or not (math.isfinite(control.se2) and control.n >= 2 and control.mean):
        return None
    sd = math.sqrt(control.se2 * control.n)
    mde_abs = m.mde * abs(control.mean)
    ratio = max(treatment.n, 1) / control.n
    need = pw.sample_size_per_arm(sd=sd, mde=mde_abs, alpha=alpha, ratio=ratio) if sd > 0 else 0.0
    return {
        "mde_relative": m.mde,
        "required_n_control": math.ceil(need),
        "required_n_treatment": math.ceil(need * ratio),
        "power_now": _num(pw.achieved_power(sd=sd, mde=mde_abs, n_control=control.n, alpha=alpha, ratio=ratio))
        if sd > 0 else 1.0,
    }


def _ci(est: float, se: float, crit: float) -> dict:
    return {"estimate": _num(est), "ci_low": _num(est - crit * se), "ci_high": _num(est + crit * se)}


def analyse(data: dict) -> dict:
    """Validate ``data`` (decoded JSON) and return the engine's JSON-ready output.

    Raises :class:`~experiments.stats.errors.InvalidStatsInput` on bad input.
    """
    inp = parse_input(data)
    alpha = inp.alpha
    pending: list[dict] = []  # one per comparison, filled in two passes
    metrics_out: list[dict] = []
    for m in inp.metrics:
        arms, cuped = _arms(m)
        sign = 1 if m.direction == "increase" else -1
        control = arms[inp.control]
        out = {
            "name": m.name, "kind": m.kind, "role": m.role, "direction": m.direction, "method": _method(m),
            "non_inferiority_margin": m.non_inferiority_margin, "cuped": cuped,
            "variants": [_variant_out(m, v, arms[v.name], cuped is not None) for v in m.variants],
            "comparisons": [],
        }
        metrics_out.append(out)
        for v in m.variants:
            if v.name == inp.control:
                continue
            treat = arms[v.name]
            eff = compare(control, treat, welch=_method(m) == "welch" and inp.sequential is None)
            row: dict[str, Any] = {"metric": m, "out": out, "variant": v.name, "eff": eff, "sign": sign}
            row["power"] = _power(m, control, treat, alpha)
            if not _usable(eff):
                row["test"] = "insufficient_data"
            else:
                ref = _reference(inp, eff, int(control.n + treat.n))
                row["ref"] = ref
                if m.role == "guardrail" and m.non_inferiority_margin is not None:
                    row["test"] = "non_inferiority"
                    row["z"], row["p"] = non_inferiority_test(
                        relative=eff.relative, relative_se=eff.relative_se,
                        margin=m.non_inferiority_margin, direction=sign, ref=ref,
                    )
                else:
                    row["test"] = "superiority"
                    row["z"] = eff.estimate / eff.se
                    row["p"] = ref.p_two_sided(row["z"])
            pending.append(row)

    tested = [r for r in pending if r["test"] != "insufficient_data"]
    adjusted, levels = adjust([r["p"] for r in tested], inp.correction, alpha=alpha)
    for r, q, lvl in zip(tested, adjusted, levels, strict=True):
        r["q"], r["level"] = q, lvl
    findings = [_finish(r, alpha) for r in pending]

    counts = dict(inp.exposed) if inp.exposed is not None else {v.name: v.n for v in inp.metrics[0].variants}
    weights = inp.expected_weights or dict.fromkeys(counts, 1.0)
    srm = srm_check(counts, weights, threshold=inp.srm_threshold)
    srm_reason = (
        f"sample ratio mismatch (chi-square p={srm.p_value:.3g} < {srm.threshold}): the observed split "
        f"{srm.observed} does not match the configured weights; data not trustworthy, fix assignment/logging"
        if not srm.passed else ""
    )
    treatments = [v.name for v in inp.metrics[0].variants if v.name != inp.control]
    return {
        "alpha": alpha,
        "control": inp.control,
        "correction": inp.correction,
        "metrics": metrics_out,
        "srm": {
            "p_value": _num(srm.p_value), "passed": srm.passed, "chi2": _num(srm.chi2),
            "observed": srm.observed, "expected": {k: _num(x) for k, x in srm.expected.items()},
            "threshold": srm.threshold, "counts_from": "exposed" if inp.exposed is not None else "metrics[0].n",
        },
        "sequential": _sequential_out(inp),
        "decision": decide(findings, variants=treatments, srm_passed=srm.passed, srm_reason=srm_reason),
    }


def _finish(r: dict, alpha: float) -> Finding:
    m, eff, sign = r["metric"], r["eff"], r["sign"]
    comp: dict[str, Any] = {"variant": r["variant"], "test": r["test"]}
    if r["test"] == "insufficient_data":
        comp.update({
            "absolute": {"estimate": _num(eff.estimate), "ci_low": None, "ci_high": None},
            "relative": {"estimate": _num(eff.relative), "ci_low": None, "ci_high": None},
            "p_value": None, "adjusted_p_value": None, "significant": False, "interval_level": None,
            "z": None, "df": None, "status": "insufficient_data", "power": r["power"],
        })
        r["out"]["comparisons"].append(comp)
        return Finding(m.name, r["variant"], m.role, "insufficient_data")
    ni = r["test"] == "non_inferiority"
    level = min(2 * r["level"], 1.0) if ni else r["level"]
    crit = r["ref"].critical(level) if level < 1.0 else 0.0
    rel = _ci(eff.relative, eff.relative_se, crit)
    significant = bool(r["q"] <= alpha)
    good = bool(sign * eff.estimate > 0)
    past = ni and beyond_margin(relative_low=rel["ci_low"], relative_high=rel["ci_high"],
                                margin=m.non_inferiority_margin, direction=sign)
    if ni:
        status = "non_inferior" if significant else ("inferior" if past else "inconclusive")
    else:
        status = ("better" if good else "worse") if significant else "no_significant_difference"
    comp.update({
        "absolute": _ci(eff.estimate, eff.se, crit), "relative": rel,
        "p_value": _num(r["p"]), "adjusted_p_value": _num(r["q"]), "significant": significant,
        "interval_level": _num(1.0 - level), "z": _num(r["z"]), "df": _num(eff.df), "reference": r["ref"].name,
        "status": status, "power": r["power"],
    })
    r["out"]["comparisons"].append(comp)
    return Finding(m.name, r["variant"], m.role, r["test"], significant=significant, good_direction=good,
                   beyond_margin=past, margin=m.non_inferiority_margin, adjusted_p=r["q"])


def _sequential_out(inp: StatsInput) -> dict | None:
    seq = inp.sequential
    if seq is None:
        return None
    if seq.method == "always_valid":
        return {"method": "always_valid", "tuning_n": seq.tuning_n or DEFAULT_TUNING_N}
    ref = GroupSequential(normalize_looks(seq.looks or [], _given(seq.information_fraction)))
    return {
        "method": "group_sequential", "spending": "lan_demets_obrien_fleming", "looks": list(ref.looks),
        "information_fraction": seq.information_fraction,
        "boundary_z": _num(ref.critical(inp.alpha)), "alpha_spent": _num(ref.spent(inp.alpha)),
    }
