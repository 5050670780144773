"""Inference for a bandit experiment, valid while its weights move.

When the share of users sent to each variant changes over time, pooling all users compares
variants whose users arrived at different times: a trend in the metric (a weekday effect, a
launch, a season) then looks like a treatment effect. As GrowthBook's bandits do, each variant's
mean is estimated per period of arrival (users keep the variant they got when they arrived)
and the periods are combined with the same weights for every variant, the period's share of
all users:

    M_k = Σ_p π_p m_kp,    Var(M_k) = Σ_p π_p² s²_kp / n_kp,    π_p = N_p / N

The difference of two such means is tested with a z-test. The sample-ratio check compares each
period's counts with that period's weights: a chi-square per period, summed (degrees of freedom
added up).

>>> cells = {("a", 0): PeriodCell(100, 30.0, 30.0), ("b", 0): PeriodCell(100, 30.0, 30.0)}
>>> round(period_weighted_effect(cells, control="a", treatment="b").estimate, 12)
0.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from experiments.stats.moments import Moments

#: A variant's users who arrived in one period: count, sum and sum of squares of the metric.
PeriodCell = Moments


@dataclass(frozen=True, slots=True)
class PeriodWeightedEffect:
    control_mean: float
    treatment_mean: float
    estimate: float  # treatment - control
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    periods_used: int


@dataclass(frozen=True, slots=True)
class PeriodSrm:
    statistic: float
    degrees_of_freedom: int
    p_value: float
    passed: bool


def period_weighted_effect(
    cells: Mapping[tuple[str, int], PeriodCell], *, control: str, treatment: str, alpha: float = 0.05
) -> PeriodWeightedEffect:
    """The period-weighted difference of means; periods where either variant has fewer than 2 users
    are left out (their weight is spread over the others)."""
    empty = PeriodCell(0, 0.0, 0.0)
    used = [p for p in sorted({p for _, p in cells})
            if cells.get((control, p), empty).n >= 2 and cells.get((treatment, p), empty).n >= 2]
    if not used:
        raise ValueError("cells: no period has at least 2 users in both variants")
    sizes = {p: sum(cell.n for (_, q), cell in cells.items() if q == p) for p in used}
    total = sum(sizes.values())
    means, variances = {}, {}
    for variant in (control, treatment):
        means[variant] = sum(sizes[p] / total * cells[(variant, p)].mean for p in used)
        variances[variant] = sum((sizes[p] / total) ** 2 * cells[(variant, p)].variance / cells[(variant, p)].n
                                 for p in used)
    estimate = means[treatment] - means[control]
    se = math.sqrt(variances[control] + variances[treatment])
    z = float(scipy_stats.norm.ppf(1 - alpha / 2))
    p_value = float(2 * scipy_stats.norm.sf(abs(estimate) / se)) if se > 0 else (0.0 if estimate else 1.0)
    return PeriodWeightedEffect(means[control], means[treatment], estimate, se, estimate - z * se,
                                estimate + z * se, p_value, len(used))


def period_srm(
    counts: Mapping[tuple[str, int], int], weights: Sequence[Mapping[str, float]], *, threshold: float = 0.001
) -> PeriodSrm:
    """Each period's counts against that period's weights (``weights[p]``), chi-squares summed."""
    statistic, dof = 0.0, 0
    for period, expected_shares in enumerate(weights):
        observed = {v: counts.get((v, period), 0) for v in expected_shares}
        total = sum(observed.values())
        live = {v: w for v, w in expected_shares.items() if w > 0}
        if total == 0 or len(live) < 2:
            continue
        statistic += sum((observed[v] - total * w) ** 2 / (total * w) for v, w in live.items())
        dof += len(live) - 1
    p_value = float(scipy_stats.chi2.sf(statistic, dof)) if dof else 1.0
    return PeriodSrm(statistic, dof, p_value, p_value >= threshold)
