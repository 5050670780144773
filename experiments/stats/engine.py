"""``analyse(input) -> Analysis``: the whole statistics engine on sufficient statistics.

Steps: validate (:mod:`.inputs`); per metric build one arm per variant (mean,
proportion, ratio, CUPED-adjusted when ``pre_*`` fields are given); compare every
treatment variant with the control; run each comparison's tests and correct them within
their families (:mod:`.decision` describes the two decision rules); build intervals at the
levels consistent with the corrected decisions; check the sample ratio and the data's
health (:mod:`.health`); decide. The results are the frozen dataclasses of :mod:`.results`.

Tests. The effect is estimated by Welch's t by default for means, z for proportions and
ratios (``"method": "welch"`` gives ratios Welch's t on the delta-method variance with
Welch-Satterthwaite degrees of freedom, as gbstats does). Superiority and deterioration tests
are on the absolute difference, whose interval is exactly consistent with the decision (the
relative interval, delta method, approximately). A guardrail with a relative margin gets the
one-sided non-inferiority test on the relative lift. A comparison's ``p_value``,
``adjusted_p_value`` and ``significant`` are those of its main test (success: superiority;
guardrail with a margin: non-inferiority; guardrail without one under ``risk_aware``:
deterioration); ``tests`` lists every test it took part in. Intervals of a one-sided test are
two-sided at level ``1 - 2 alpha_i``, of a two-sided test at ``1 - alpha_i``. With
``sequential`` every test uses the sequential reference (normal approximation); with
``"engine": "bayesian"`` the flat-prior posterior (:mod:`.bayesian`).

``power`` (when the metric has ``mde``, a relative effect, or is a guardrail with a margin)
plans the metric's main test: under ``risk_aware`` one-sided, success tests at ``alpha / S``
(``S`` success comparisons), non-inferiority at ``alpha`` against the margin, each with power
``1 - beta / (G + 1)`` for ``G`` guardrails with a margin; under ``all_metrics_corrected`` a
two-sided test at the nominal alpha with the input's ``power``. Proportions use the
treatment's variance under the alternative, as spotify-confidence does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from experiments.stats import health as hc
from experiments.stats import power as pw
from experiments.stats.bayesian import BayesianPosterior, posterior_summary
from experiments.stats.correction import adjust
from experiments.stats.cuped import CupedStats, cuped_adjust
from experiments.stats.decision import Finding, decide
from experiments.stats.inference import FixedHorizon, Reference, one_sided_p
from experiments.stats.inputs import MetricInput, StatsInput, VariantInput, parse_input
from experiments.stats.means import Arm, Effect, compare, mean_arm, proportion_arm
from experiments.stats.noninferiority import beyond_margin, non_inferiority_test
from experiments.stats.ratio import ratio_arm
from experiments.stats.results import (
    AlwaysValidDesign,
    Analysis,
    Comparison,
    CupedAdjustment,
    Decision,
    GroupSequentialDesign,
    HealthCheck,
    Interval,
    MetricResult,
    Power,
    SequentialDesign,
    SrmCheck,
    TestOutcome,
    VariantSummary,
)
from experiments.stats.sequential import DEFAULT_RHO, AlwaysValid, GroupSequential, normalize_looks
from experiments.stats.srm import srm_check

DEFAULT_TUNING_N = 5_000  # gbstats' default sequential_tuning_parameter


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
    """One comparison after its tests and before the corrections within their families.

    ``test`` is the main test (superiority | non_inferiority | deterioration | insufficient_data);
    ``sides`` its sidedness; ``det_p`` the one-sided deterioration p-value (risk_aware only)."""

    metric: MetricInput
    variant: str
    effect: Effect
    power: Power | None
    test: str
    reference: Reference | None = None
    z: float = math.nan
    p: float = math.nan
    sides: int = 2
    family: str = "all_metrics"
    det_p: float | None = None


def _risk_aware(inp: StatsInput) -> bool:
    return inp.decision_rule == "risk_aware"


def _deterioration_alpha(inp: StatsInput) -> float:
    return inp.deterioration_alpha if inp.deterioration_alpha is not None else inp.alpha


def analyse(data: dict) -> Analysis:
    """Validate ``data`` (decoded JSON) and analyse it.

    Raises :class:`~experiments.stats.errors.InvalidStatsInput` on bad input.
    """
    inp = parse_input(data)
    arms = [_arms(m) for m in inp.metrics]
    plan = _Plan.of(inp)
    tests = [_test(inp, plan, m, metric_arms, v.name)
             for m, (metric_arms, _) in zip(inp.metrics, arms, strict=True)
             for v in m.variants if v.name != inp.control]
    judged = _judge(tests, inp)
    metrics = tuple(
        _metric_result(m, metric_arms, cuped, [c for t, (c, _) in zip(tests, judged, strict=True) if t.metric is m])
        for m, (metric_arms, cuped) in zip(inp.metrics, arms, strict=True)
    )
    srm, srm_reason = _srm(inp)
    health = _health(inp, srm, metrics)
    blocked = tuple(h.message for h in health if h.status == "failed" and not h.name.startswith("srm_"))
    treatments = [v.name for v in inp.metrics[0].variants if v.name != inp.control]
    decision = decide([f for _, f in judged], variants=treatments, srm_passed=srm.passed, srm_reason=srm_reason,
                      blocked_by=blocked)
    return Analysis(
        alpha=inp.alpha, control=inp.control, correction=inp.correction, metrics=metrics, srm=srm,
        sequential=_sequential_design(inp),
        decision=_with_tests(decision, metrics),
        decision_rule=inp.decision_rule,
        deterioration_alpha=_deterioration_alpha(inp) if _risk_aware(inp) else None,
        engine=inp.engine, health=health,
    )


def _with_tests(decision: Decision, metrics: tuple[MetricResult, ...]) -> Decision:
    """Each variant's verdict with, per metric, the tests its comparison took part in."""
    per = {
        variant: replace(verdict, tests={m.name: c.tests for m in metrics for c in m.comparisons
                                         if c.variant == variant})
        for variant, verdict in decision.variants.items()
    }
    return replace(decision, variants=per)


@dataclass(frozen=True)
class _Plan:
    """What the sample sizes need to know: counts of success comparisons and guardrails with a margin."""

    success: int
    guardrails: int
    comparisons: int

    @classmethod
    def of(cls, inp: StatsInput) -> _Plan:
        arms = len({v.name for v in inp.metrics[0].variants}) - 1
        success = sum(1 for m in inp.metrics if m.role == "success") * max(arms, 1)
        guardrails = sum(1 for m in inp.metrics if m.role == "guardrail" and m.non_inferiority_margin is not None)
        return cls(success=success, guardrails=guardrails, comparisons=len(inp.metrics) * max(arms, 1))


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
        return m.method or "z"
    return m.method or ("welch" if m.kind == "mean" else "z")


def _sign(m: MetricInput) -> int:
    return 1 if m.direction == "increase" else -1


def _reference(inp: StatsInput, eff: Effect, n_total: int) -> Reference:
    if inp.engine == "bayesian":
        return BayesianPosterior()
    seq = inp.sequential
    if seq is None:
        return FixedHorizon(eff.df)
    if seq.method == "group_sequential":
        return GroupSequential(normalize_looks(seq.looks or [], _given(seq.information_fraction)),
                               seq.spending or "obrien_fleming", seq.rho or DEFAULT_RHO)
    return AlwaysValid(n=n_total, tuning_n=seq.tuning_n or DEFAULT_TUNING_N, alpha=inp.alpha)


def _usable(eff: Effect) -> bool:
    vals = (eff.estimate, eff.se, eff.relative, eff.relative_se)
    return all(math.isfinite(float(x)) for x in vals) and eff.se > 0 and eff.relative_se > 0


def _power(inp: StatsInput, plan: _Plan, m: MetricInput, control: Arm, treatment: Arm) -> Power | None:
    """Sample size and power of the metric's main test (see the module docstring)."""
    margin = m.non_inferiority_margin if m.role == "guardrail" else None
    effect = m.mde if m.mde is not None else (margin if _risk_aware(inp) else None)
    if effect is None or not (math.isfinite(control.se2) and control.n >= 2 and control.mean):
        return None
    sd = math.sqrt(control.se2 * control.n)
    mde_abs = effect * abs(control.mean)
    ratio = max(treatment.n, 1) / control.n
    if _risk_aware(inp):
        target = pw.guardrail_power(inp.power, guardrails=plan.guardrails, success_metrics=plan.success)
        if m.role == "success":
            level = inp.alpha / max(plan.success, 1)
        elif margin is not None:
            level = inp.alpha
        else:
            level = _deterioration_alpha(inp) / max(plan.comparisons, 1)
        sides = 1
    else:
        target, level, sides = inp.power, inp.alpha, 2
    sd_t = None
    if m.kind == "proportion" and m.method != "welch" and m.role == "success":
        p_alt = min(max(float(control.mean) * (1.0 + _sign(m) * effect), 0.0), 1.0)
        sd_t = math.sqrt(p_alt * (1.0 - p_alt))
    kw = {"sd": sd, "mde": mde_abs, "alpha": level, "ratio": ratio, "sides": sides, "sd_treatment": sd_t}
    need = pw.sample_size_per_arm(power=target, **kw) if sd > 0 else 0.0
    return Power(
        mde_relative=effect,
        required_n_control=math.ceil(need),
        required_n_treatment=math.ceil(need * ratio),
        power_now=_num(pw.achieved_power(n_control=control.n, **kw)) if sd > 0 else 1.0,
        target_power=target, alpha=level, sides=sides,
    )


def _test(inp: StatsInput, plan: _Plan, m: MetricInput, arms: dict[str, Arm], variant: str) -> _Test:
    """The variant's effect over the control and its uncorrected tests (none without usable data)."""
    control, treat = arms[inp.control], arms[variant]
    welch = _method(m) == "welch" and inp.sequential is None and inp.engine == "frequentist"
    eff = compare(control, treat, welch=welch)
    power = _power(inp, plan, m, control, treat)
    if not _usable(eff):
        return _Test(m, variant, eff, power, "insufficient_data")
    ref = _reference(inp, eff, int(control.n + treat.n))
    sign = _sign(m)
    z = eff.estimate / eff.se
    risk_aware = _risk_aware(inp)
    det_p = one_sided_p(ref, -sign * z) if risk_aware else None
    if m.role == "guardrail" and m.non_inferiority_margin is not None:
        z_ni, p = non_inferiority_test(
            relative=eff.relative, relative_se=eff.relative_se,
            margin=m.non_inferiority_margin, direction=sign, ref=ref,
        )
        family = "guardrail" if risk_aware else "all_metrics"
        return _Test(m, variant, eff, power, "non_inferiority", ref, z_ni, p, 1, family, det_p)
    if not risk_aware:
        return _Test(m, variant, eff, power, "superiority", ref, z, ref.p_two_sided(z), 2)
    if m.role == "success":
        return _Test(m, variant, eff, power, "superiority", ref, z, one_sided_p(ref, sign * z), 1, "success", det_p)
    return _Test(m, variant, eff, power, "deterioration", ref, z, math.nan, 1, "deterioration", det_p)


@dataclass(frozen=True)
class _Corrected:
    """One test's outcome after the correction within its family."""

    p: float
    adjusted: float
    level: float
    alpha: float

    @property
    def significant(self) -> bool:
        return bool(self.adjusted <= self.alpha)


def _family(ps: list[float], method: str, alpha: float) -> list[_Corrected]:
    adjusted, levels = adjust(ps, method, alpha=alpha)
    return [_Corrected(p, q, lv, alpha) for p, q, lv in zip(ps, adjusted, levels, strict=True)]


def _judge(tests: list[_Test], inp: StatsInput) -> list[tuple[Comparison, Finding]]:
    """Correct every family of tests, then give each comparison its result and finding."""
    tested = [i for i, t in enumerate(tests) if t.test != "insufficient_data"]
    main: dict[int, _Corrected] = {}
    det: dict[int, _Corrected] = {}
    if not _risk_aware(inp):
        main = dict(zip(tested, _family([tests[i].p for i in tested], inp.correction, inp.alpha), strict=True))
    else:
        success = [i for i in tested if tests[i].family == "success"]
        main |= dict(zip(success, _family([tests[i].p for i in success], inp.correction, inp.alpha), strict=True))
        for i in tested:
            if tests[i].family == "guardrail":
                main[i] = _Corrected(tests[i].p, tests[i].p, inp.alpha, inp.alpha)
        det_ps = [float(_given(tests[i].det_p)) for i in tested]
        det = dict(zip(tested, _family(det_ps, inp.correction, _deterioration_alpha(inp)), strict=True))
        for i in tested:
            if tests[i].family == "deterioration":
                main[i] = det[i]
    return [
        _tested(t, main[i], det.get(i), inp) if i in main else _untested(t)
        for i, t in enumerate(tests)
    ]


def _untested(t: _Test) -> tuple[Comparison, Finding]:
    comparison = Comparison(
        variant=t.variant, test=t.test,
        absolute=Interval(_num(t.effect.estimate), None, None), relative=Interval(_num(t.effect.relative), None, None),
        p_value=None, adjusted_p_value=None, significant=False, interval_level=None,
        z=None, df=None, reference=None, status="insufficient_data", power=t.power,
    )
    return comparison, Finding(t.metric.name, t.variant, t.metric.role, "insufficient_data")


def _interval(est: float, se: float, crit: float, *, bayes_level: bool = False, increase: bool = True) -> Interval:
    if not bayes_level:
        return Interval(estimate=_num(est), ci_low=_num(est - crit * se), ci_high=_num(est + crit * se))
    post = posterior_summary(mean=est, sd=se, increase=increase)
    return Interval(estimate=_num(est), ci_low=_num(est - crit * se), ci_high=_num(est + crit * se),
                    chance_to_win=_num(post.chance_to_win), risk=_num(post.risk),
                    risk_control=_num(post.risk_control))


def _outcome(test: str, family: str, c: _Corrected, result: str) -> TestOutcome:
    return TestOutcome(test=test, family=family, alpha=c.alpha, level=_num(c.level), p_value=_num(c.p),
                       adjusted_p_value=_num(c.adjusted), significant=c.significant, result=result)


def _tested(t: _Test, c: _Corrected, d: _Corrected | None, inp: StatsInput) -> tuple[Comparison, Finding]:
    """Intervals at the corrected level (doubled for a one-sided test), status, tests and finding."""
    m, eff, sign = t.metric, t.effect, _sign(t.metric)
    if t.reference is None:
        raise AssertionError("a tested comparison has no reference")
    level = min(2 * c.level, 1.0) if t.sides == 1 else c.level
    crit = t.reference.critical(level) if level < 1.0 else 0.0
    bayes = inp.engine == "bayesian"
    rel = _interval(eff.relative, eff.relative_se, crit, bayes_level=bayes, increase=sign > 0)
    absolute = _interval(eff.estimate, eff.se, crit, bayes_level=bayes, increase=sign > 0)
    significant = c.significant
    good = bool(sign * eff.estimate > 0)
    margin = m.non_inferiority_margin
    ni = t.test == "non_inferiority"
    past = ni and margin is not None and beyond_margin(
        relative_low=eff.relative - crit * eff.relative_se, relative_high=eff.relative + crit * eff.relative_se,
        margin=margin, direction=sign,
    )
    deteriorated = d is not None and d.significant
    if t.test == "deterioration":
        status = "worse" if deteriorated else "no_significant_difference"
    elif ni:
        status = "non_inferior" if significant else ("inferior" if past else "inconclusive")
        status = "worse" if deteriorated and not significant and not past else status
    elif deteriorated:
        status = "worse"
    else:
        status = ("better" if good else "worse") if significant else "no_significant_difference"
    outcomes = []
    if t.test != "deterioration":
        result = {"superiority": "better" if good else "worse", "non_inferiority": "non_inferior"}[t.test]
        outcomes.append(_outcome(t.test, t.family, c, result if significant else "not_shown"))
    if d is not None:
        outcomes.append(_outcome("deterioration", "deterioration", d,
                                 "deteriorated" if deteriorated else "not_deteriorated"))
    comparison = Comparison(
        variant=t.variant, test=t.test, absolute=absolute, relative=rel,
        p_value=_num(c.p), adjusted_p_value=_num(c.adjusted), significant=significant,
        interval_level=_num(1.0 - level), z=_num(t.z), df=_num(eff.df), reference=t.reference.name,
        status=status, power=t.power, tests=tuple(outcomes),
    )
    finding = Finding(m.name, t.variant, m.role, t.test,
                      significant=significant and t.test != "deterioration", good_direction=good,
                      beyond_margin=past, margin=margin, adjusted_p=c.adjusted, deteriorated=deteriorated,
                      deterioration_p=None if d is None else d.adjusted)
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
    test = inp.srm_test or ("anytime_valid" if inp.sequential is not None else "chi_square")
    srm = srm_check(counts, weights, threshold=inp.srm_threshold, test=test)
    label, decisive = ("anytime-valid", srm.anytime_p_value) if test == "anytime_valid" else ("chi-square", srm.p_value)
    reason = (
        f"sample ratio mismatch ({label} p={decisive:.3g} < {srm.threshold}): the observed split "
        f"{srm.observed} does not match the configured weights; data not trustworthy, fix assignment/logging"
        if not srm.passed else ""
    )
    check = SrmCheck(
        p_value=_num(srm.p_value), passed=srm.passed, chi2=_num(srm.chi2),
        observed=srm.observed, expected={k: _num(x) for k, x in srm.expected.items()},
        threshold=srm.threshold, counts_from="exposed" if inp.exposed is not None else "metrics[0].n",
        test=srm.test, anytime_p_value=_num(srm.anytime_p_value),
    )
    return check, reason


def _health(inp: StatsInput, srm: SrmCheck, metrics: tuple[MetricResult, ...]) -> tuple[HealthCheck, ...]:
    exposed = sum(srm.observed.values())
    return (
        *hc.srm_checks(srm),
        hc.multiple_exposures(inp.health, exposed),
        hc.pre_period_imbalance(inp.metrics, inp.control),
        hc.large_uplift(metrics),
        hc.too_little_data(metrics),
        hc.late_records(inp.health),
    )


def _sequential_design(inp: StatsInput) -> SequentialDesign | None:
    seq = inp.sequential
    if seq is None:
        return None
    if seq.method == "always_valid":
        return AlwaysValidDesign(tuning_n=seq.tuning_n or DEFAULT_TUNING_N)
    kind = seq.spending or "obrien_fleming"
    ref = GroupSequential(normalize_looks(seq.looks or [], _given(seq.information_fraction)), kind,
                          seq.rho or DEFAULT_RHO)
    return GroupSequentialDesign(
        spending=f"lan_demets_{kind}", looks=ref.looks, information_fraction=_given(seq.information_fraction),
        boundary_z=_num(ref.critical(inp.alpha)), alpha_spent=_num(ref.spent(inp.alpha)),
        rho=ref.rho if kind == "power" else None,
    )
