"""CUPED / regression adjustment with a pre-exposure covariate, from sufficient statistics.

``theta`` is pooled *within* variants: ``sum_j Sxy_j / sum_j Sxx_j`` with ``Sxy_j`` and
``Sxx_j`` the centred cross-product and sum of squares of variant ``j``. That is the
coefficient of the covariate in the regression ``y ~ variant dummies + pre`` (ANCOVA),
so it is not biased by the treatment effect. Each variant's adjusted mean is

    mean_y_j - theta * (mean_pre_j - mean_pre_all)

and its per-user variance ``var_y - 2 theta cov + theta**2 var_pre``; the comparison then
runs as for a plain mean (Welch or z). ``variance_reduction`` is
``1 - pooled adjusted variance / pooled raw variance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats.means import Arm


@dataclass(frozen=True)
class CupedStats:
    """One variant's sufficient statistics for an outcome ``y`` and a covariate ``x`` (pre)."""

    n: int
    sum: float
    sum_sq: float
    pre_sum: float
    pre_sum_sq: float
    pre_cross_sum: float


@dataclass(frozen=True)
class CupedResult:
    theta: float
    variance_reduction: float
    arms: list[Arm]  # adjusted arms, in the order of the input


def pooled_theta(stats: list[CupedStats]) -> float:
    """Within-variant pooled regression slope of the outcome on the covariate."""
    sxy = sum(s.pre_cross_sum - s.pre_sum * s.sum / s.n for s in stats if s.n > 0)
    sxx = sum(s.pre_sum_sq - s.pre_sum**2 / s.n for s in stats if s.n > 0)
    return float(sxy / sxx) if sxx > 0 else 0.0


def cuped_adjust(stats: list[CupedStats]) -> CupedResult:
    """Adjusted arms for every variant, with the pooled ``theta`` and the variance reduction.

    >>> a = CupedStats(n=3, sum=6.0, sum_sq=14.0, pre_sum=6.0, pre_sum_sq=14.0, pre_cross_sum=14.0)
    >>> r = cuped_adjust([a, a])
    >>> r.theta, r.variance_reduction
    (1.0, 1.0)
    """
    theta = pooled_theta(stats)
    total_n = sum(s.n for s in stats)
    pre_mean_all = sum(s.pre_sum for s in stats) / total_n if total_n else 0.0
    arms: list[Arm] = []
    raw_ss = adj_ss = 0.0
    for s in stats:
        if s.n < 2:
            arms.append(Arm(n=s.n, mean=float("nan"), se2=float("nan")))
            continue
        my, mx = s.sum / s.n, s.pre_sum / s.n
        vy = (s.sum_sq - s.sum * my) / (s.n - 1)
        vx = (s.pre_sum_sq - s.pre_sum * mx) / (s.n - 1)
        cxy = (s.pre_cross_sum - s.pre_sum * my) / (s.n - 1)
        v_adj = max(vy - 2.0 * theta * cxy + theta**2 * vx, 0.0)
        raw_ss += (s.n - 1) * max(vy, 0.0)
        adj_ss += (s.n - 1) * v_adj
        arms.append(Arm(n=s.n, mean=float(my - theta * (mx - pre_mean_all)), se2=v_adj / s.n))
    reduction = float(1.0 - adj_ss / raw_ss) if raw_ss > 0 else 0.0
    return CupedResult(theta=theta, variance_reduction=reduction, arms=arms)


def adjusted_values(y: np.ndarray, pre: np.ndarray, theta: float) -> np.ndarray:
    """Raw-row form of the adjustment (for checks): ``y - theta * (pre - mean(pre))``."""
    return y - theta * (pre - pre.mean())
