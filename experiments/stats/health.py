"""Health checks: data-quality results beside the statistics, each with a status and a plain message.

Status ``ok``, ``warning`` (look before trusting the numbers), ``failed`` (the decision is
blocked: the verdict is ``inconclusive``) or ``not_checked`` (the input lacks what the check
needs). The checks:

* ``srm_chi_square`` and ``srm_anytime_valid``: the sample ratio mismatch tests of
  :mod:`.srm`; the one the analysis uses for its decision fails below ``srm_threshold``, the
  other only warns.
* ``multiple_exposures``: users exposed to more than one variant (``health.multiple_exposures``);
  a warning up to 1% of the exposed users, failed above.
* ``pre_period_imbalance``: for CUPED metrics, a Welch test of the covariate's means between
  each treatment and the control; ``p < 0.001`` warns (randomization should balance the
  pre-period, so an imbalance hints at broken assignment or a covariate leaking the treatment).
* ``large_uplift``: a relative lift beyond +-50% warns (usually a logging or unit bug).
* ``too_little_data``: a comparison the engine could not test (fewer than two users, zero
  variance or a zero control mean) warns.
* ``late_records``: the share of records that arrived after their window closed
  (``health.late_records`` of ``health.records``); a warning above 1%, failed above 10%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from experiments.stats.inputs import HealthInput, MetricInput
from experiments.stats.results import HealthCheck, MetricResult, SrmCheck

MULTIPLE_EXPOSURE_FAIL = 0.01
IMBALANCE_P = 0.001
LARGE_UPLIFT = 0.5
LATE_WARN, LATE_FAIL = 0.01, 0.10


def srm_checks(srm: SrmCheck) -> list[HealthCheck]:
    """Both SRM tests; the deciding one fails the analysis, the other warns."""
    out = []
    for test, p in (("chi_square", srm.p_value), ("anytime_valid", srm.anytime_p_value)):
        name = f"srm_{test}"
        if p is None:
            out.append(HealthCheck(name, "not_checked", "no users exposed yet"))
            continue
        deciding = srm.test == test
        if p >= srm.threshold:
            msg = f"the split {dict(srm.observed)} matches the configured weights (p={p:.3g})"
            out.append(HealthCheck(name, "ok", msg, p))
        else:
            status = "failed" if deciding else "warning"
            msg = (f"sample ratio mismatch: the split {dict(srm.observed)} does not match the configured weights "
                   f"(p={p:.3g} < {srm.threshold}); assignment or logging is broken")
            out.append(HealthCheck(name, status, msg, p))
    return out


def multiple_exposures(health: HealthInput | None, exposed_total: int) -> HealthCheck:
    count = None if health is None else health.multiple_exposures
    if count is None:
        return HealthCheck("multiple_exposures", "not_checked", "health.multiple_exposures not given")
    share = count / exposed_total if exposed_total else 0.0
    if count == 0:
        return HealthCheck("multiple_exposures", "ok", "no user was exposed to more than one variant", 0.0)
    status = "failed" if share > MULTIPLE_EXPOSURE_FAIL else "warning"
    return HealthCheck("multiple_exposures", status,
                       f"{count} users ({share:.2%}) saw more than one variant: assignment is not sticky", share)


def pre_period_imbalance(metrics: Sequence[MetricInput], control: str) -> HealthCheck:
    """Smallest Welch p-value of the CUPED covariate's means, treatment against control."""
    worst: tuple[float, str] | None = None
    for m in metrics:
        by = {v.name: v for v in m.variants}
        c = by[control]
        if c.pre_sum is None or c.pre_sum_sq is None:
            continue
        for v in m.variants:
            if v.name == control or v.pre_sum is None or v.pre_sum_sq is None or min(v.n, c.n) < 2:
                continue
            se2 = _var(c.n, c.pre_sum, c.pre_sum_sq) / c.n + _var(v.n, v.pre_sum, v.pre_sum_sq) / v.n
            if se2 <= 0:
                continue
            z = (v.pre_sum / v.n - c.pre_sum / c.n) / math.sqrt(se2)
            p = float(2.0 * stats.norm.sf(abs(z)))
            if worst is None or p < worst[0]:
                worst = (p, f"{m.name}/{v.name}")
    if worst is None:
        return HealthCheck("pre_period_imbalance", "not_checked", "no metric has a CUPED covariate")
    p, where = worst
    if p < IMBALANCE_P:
        return HealthCheck("pre_period_imbalance", "warning",
                           f"the pre-period covariate differs between variants for {where} (p={p:.3g}); "
                           "randomization should balance it: check assignment and the covariate", p)
    return HealthCheck("pre_period_imbalance", "ok", f"pre-period covariates are balanced (smallest p={p:.3g})", p)


def _var(n: int, total: float, total_sq: float) -> float:
    return max((total_sq - total * total / n) / (n - 1), 0.0)


def large_uplift(metrics: Sequence[MetricResult]) -> HealthCheck:
    big = [(m.name, c.variant, c.relative.estimate) for m in metrics for c in m.comparisons
           if c.relative.estimate is not None and abs(c.relative.estimate) > LARGE_UPLIFT]
    if not big:
        return HealthCheck("large_uplift", "ok", f"no relative lift beyond +-{LARGE_UPLIFT:.0%}")
    name, variant, lift = max(big, key=lambda b: abs(b[2] or 0.0))
    return HealthCheck("large_uplift", "warning",
                       f"{name}/{variant} moved by {lift:+.1%}: effects this large are usually a logging or unit "
                       "bug; check the metric before trusting it", lift)


def too_little_data(metrics: Sequence[MetricResult]) -> HealthCheck:
    thin = [f"{m.name}/{c.variant}" for m in metrics for c in m.comparisons if c.status == "insufficient_data"]
    if not thin:
        return HealthCheck("too_little_data", "ok", "every comparison has enough data to be tested")
    return HealthCheck("too_little_data", "warning",
                       f"not enough data to test {', '.join(thin)} (fewer than two users, no variance or a zero "
                       "control mean)", float(len(thin)))


def late_records(health: HealthInput | None) -> HealthCheck:
    if health is None or health.late_records is None or not health.records:
        return HealthCheck("late_records", "not_checked", "health.late_records and health.records not given")
    share = health.late_records / health.records
    status = "failed" if share > LATE_FAIL else ("warning" if share > LATE_WARN else "ok")
    return HealthCheck("late_records", status,
                       f"{share:.2%} of the records arrived after their window closed and are not in the figures",
                       share)
