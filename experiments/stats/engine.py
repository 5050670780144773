"""``analyse(input) -> Analysis``: the whole statistics engine on sufficient statistics.

Steps: validate (:mod:`.inputs`); per metric build one arm per variant (mean,
proportion, ratio, CUPED-adjusted when ``pre_*`` fields are given); compare every
treatment variant with the control (superiority, or non-inferiority for a guardrail
with a margin); correct the p-values across all metrics and arms; build intervals at the
levels consistent with the corrected decisions; check the sample ratio; decide
(:mod:`.decision`). The results are the frozen dataclasses of :mod:`.results`.

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
from dataclasses import dataclass
from typing import Any

from experiments.stats import power as pw
from experiments.stats.correction import adjust
from experiments.stats.cuped import CupedStats, cuped_adjust
from experiments.stats.decision import Finding, decide
from experiments.stats.inference import FixedHorizon, Reference
from experiments.stats.inputs import MetricInput, StatsInput, VariantInput, parse_input
from experiments.stats.means import Arm, Effect, compare, mean_arm, proportion_arm
from experiments.stats.noninferiority import beyond_margin, non_inferiority_test
from experiments.stats.ratio import ratio_arm
from experiments.stats.results import (
    AlwaysValidDesign,
    Analysis,
    Comparison,
    CupedAdjustment,
    GroupSequentialDesign,
    Interval,
    MetricResult,
    Power,
    SequentialDesign,
    SrmCheck,
    VariantSummary,
)
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


@dataclass(frozen=True)
class _Test:
    """One comparison after its test and before the correction across all comparisons."""

    metric: MetricInput
    variant: str
    effect: Effect
    power: Power | None
    test: str  # superiority | non_inferiority | insufficient_data
    reference: Reference | None = None
    z: float = math.nan
    p: float = math.nan


def analyse(data: dict) -> Analysis:
    """Validate ``data`` (decoded JSON) and analyse it.

    Raises :class:`~experiments.stats.errors.InvalidStatsInput` on bad input.
    """
    inp = parse_input(data)
    arms = [_arms(m) for m in inp.metrics]
    tests = [_test(inp, m, metric_arms, v.name)
             for m, (metric_arms, _) in zip(inp.metrics, arms, strict=True)
             for v in m.variants if v.name != inp.control]
    judged = _judge(tests, inp)
    metrics = tuple(
        _metric_result(m, metric_arms, cuped, [c for t, (c, _) in zip(tests, judged, strict=True) if t.metric is m])
        for m, (metric_arms, cuped) in zip(inp.metrics, arms, strict=True)
    )
    srm, srm_reason = _srm(inp)
    treatments = [v.name for v in inp.metrics[0].variants if v.name != inp.control]
    return Analysis(
        alpha=inp.alpha, control=inp.control, correction=inp.correction, metrics=metrics, srm=srm,
        sequential=_sequential_design(inp),
        decision=decide([f for _, f in judged], variants=treatments, srm_passed=srm.passed, srm_reason=srm_reason),
    )


def _arms(m: MetricInput) -> tuple[dict[str, Arm], CupedAdjustment | None]:
    if m.variants[0].pre_sum is not None and m.kind != "ratio":
        stats = [
            CupedStats(v.n, v.sum, v.sum if v.sum_sq is None else v.sum_sq,
                       _given(v.pre_sum), _given(v.pre_sum_sq), _given(v.pre_cross_sum))
            for v in m.variants
        ]
        res = cuped_adjust(stats)
        cuped = CupedAdjustment(theta=_num(res.theta), variance_reduction=_num(res.variance_reduction))
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


def _method(m: MetricInput) -> str:
    if m.kind == "ratio":
        return "z"
    return m.method or ("welch" if m.kind == "mean" else "z")


def _sign(m: MetricInput) -> int:
    return 1 if m.direction == "increase" else -1


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


def _power(m: MetricInput, control: Arm, treatment: Arm, alpha: float) -> Power | None:
    if m.mde is None or not (math.isfinite(control.se2) and control.n >= 2 and control.mean):
        return None
    sd = math.sqrt(control.se2 * control.n)
    mde_abs = m.mde * abs(control.mean)
    ratio = max(treatment.n, 1) / control.n
    need = pw.sample_size_per_arm(sd=sd, mde=mde_abs, alpha=alpha, ratio=ratio) if sd > 0 else 0.0
    return Power(
        mde_relative=m.mde,
        required_n_control=math.ceil(need),
        required_n_treatment=math.ceil(need * ratio),
        power_now=_num(pw.achieved_power(sd=sd, mde=mde_abs, n_control=control.n, alpha=alpha, ratio=ratio))
        if sd > 0 else 1.0,
    )


def _test(inp: StatsInput, m: MetricInput, arms: dict[str, Arm], variant: str) -> _Test:
    """The variant's effect over the control and its uncorrected test (none without usable data)."""
    control, treat = arms[inp.control], arms[variant]
    eff = compare(control, treat, welch=_method(m) == "welch" and inp.sequential is None)
    power = _power(m, control, treat, inp.alpha)
    if not _usable(eff):
        return _Test(m, variant, eff, power, "insufficient_data")
    ref = _reference(inp, eff, int(control.n + treat.n))
    if m.role == "guardrail" and m.non_inferiority_margin is not None:
        z, p = non_inferiority_test(
            relative=eff.relative, relative_se=eff.relative_se,
            margin=m.non_inferiority_margin, direction=_sign(m), ref=ref,
        )
        return _Test(m, variant, eff, power, "non_inferiority", ref, z, p)
    z = eff.estimate / eff.se
    return _Test(m, variant, eff, power, "superiority", ref, z, ref.p_two_sided(z))


def _judge(tests: list[_Test], inp: StatsInput) -> list[tuple[Comparison, Finding]]:
    """Correct the p-values across every tested comparison, then give each its result and finding."""
    tested = [t for t in tests if t.test != "insufficient_data"]
    adjusted, levels = adjust([t.p for t in tested], inp.correction, alpha=inp.alpha)
    corrected = iter(zip(adjusted, levels, strict=True))
    return [
        _untested(t) if t.test == "insufficient_data" else _tested(t, *next(corrected), alpha=inp.alpha)
        for t in tests
    ]


def _untested(t: _Test) -> tuple[Comparison, Finding]:
    comparison = Comparison(
        variant=t.variant, test=t.test,
        absolute=Interval(_num(t.effect.estimate), None, None), relative=Interval(_num(t.effect.relative), None, None),
        p_value=None, adjusted_p_value=None, significant=False, interval_level=None,
        z=None, df=None, reference=None, status="insufficient_data", power=t.power,
    )
    return comparison, Finding(t.metric.name, t.variant, t.metric.role, "insufficient_data")


def _interval(est: float, se: float, crit: float) -> Interval:
    return Interval(estimate=_num(est), ci_low=_num(est - crit * se), ci_high=_num(est + crit * se))


def _tested(t: _Test, q: float, level: float, *, alpha: float) -> tuple[Comparison, Finding]:
    """Intervals at the corrected ``level`` (doubled for the one-sided non-inferiority test), status, finding."""
    m, eff, sign = t.metric, t.effect, _sign(t.metric)
    if t.reference is None:
        raise AssertionError("a tested comparison has no reference")
    ni = t.test == "non_inferiority"
    level = min(2 * level, 1.0) if ni else level
    crit = t.reference.critical(level) if level < 1.0 else 0.0
    rel = _interval(eff.relative, eff.relative_se, crit)
    significant = bool(q <= alpha)
    good = bool(sign * eff.estimate > 0)
    margin = m.non_inferiority_margin
    past = ni and margin is not None and beyond_margin(
        relative_low=eff.relative - crit * eff.relative_se, relative_high=eff.relative + crit * eff.relative_se,
        margin=margin, direction=sign,
    )
    if ni:
        status = "non_inferior" if significant else ("inferior" if past else "inconclusive")
    else:
        status = ("better" if good else "worse") if significant else "no_significant_difference"
    comparison = Comparison(
        variant=t.variant, test=t.test, absolute=_interval(eff.estimate, eff.se, crit), relative=rel,
        p_value=_num(t.p), adjusted_p_value=_num(q), significant=significant,
        interval_level=_num(1.0 - level), z=_num(t.z), df=_num(eff.df), reference=t.reference.name,
        status=status, power=t.power,
    )
    finding = Finding(m.name, t.variant, m.role, t.test, significant=significant, good_direction=good,
                      beyond_margin=past, margin=m.non_inferiority_margin, adjusted_p=q)
    return comparison, finding


def _variant_summary(m: MetricInput, v: VariantInput, arm: Arm, adjusted: bool) -> VariantSummary:
    """Per-variant summary: the raw metric value and, with CUPED, the adjusted one."""
    den = v.den_sum if m.kind == "ratio" else v.n
    return VariantSummary(name=v.name, n=v.n, mean=_num(v.sum / den) if den else None,
                          adjusted_mean=_num(arm.mean) if adjusted else None)


def _metric_result(m: MetricInput, arms: dict[str, Arm], cuped: CupedAdjustment | None,
                   comparisons: list[Comparison]) -> MetricResult:
    return MetricResult(
        name=m.name, kind=m.kind, role=m.role, direction=m.direction, method=_method(m),
        non_inferiority_margin=m.non_inferiority_margin, cuped=cuped,
        variants=tuple(_variant_summary(m, v, arms[v.name], cuped is not None) for v in m.variants),
        comparisons=tuple(comparisons),
    )


def _srm(inp: StatsInput) -> tuple[SrmCheck, str]:
    """The SRM check and, when it fails, the reason that blocks the decision."""
    counts = dict(inp.exposed) if inp.exposed is not None else {v.name: v.n for v in inp.metrics[0].variants}
    weights = inp.expected_weights or dict.fromkeys(counts, 1.0)
    srm = srm_check(counts, weights, threshold=inp.srm_threshold)
    reason = (
        f"sample ratio mismatch (chi-square p={srm.p_value:.3g} < {srm.threshold}): the observed split "
        f"{srm.observed} does not match the configured weights; data not trustworthy, fix assignment/logging"
        if not srm.passed else ""
    )
    check = SrmCheck(
        p_value=_num(srm.p_value), passed=srm.passed, chi2=_num(srm.chi2),
        observed=srm.observed, expected={k: _num(x) for k, x in srm.expected.items()},
        threshold=srm.threshold, counts_from="exposed" if inp.exposed is not None else "metrics[0].n",
    )
    return check, reason


def _sequential_design(inp: StatsInput) -> SequentialDesign | None:
    seq = inp.sequential
    if seq is None:
        return None
    if seq.method == "always_valid":
        return AlwaysValidDesign(tuning_n=seq.tuning_n or DEFAULT_TUNING_N)
    ref = GroupSequential(normalize_looks(seq.looks or [], _given(seq.information_fraction)))
    return GroupSequentialDesign(
        spending="lan_demets_obrien_fleming", looks=ref.looks, information_fraction=_given(seq.information_fraction),
        boundary_z=_num(ref.critical(inp.alpha)), alpha_spent=_num(ref.spent(inp.alpha)),
    )
