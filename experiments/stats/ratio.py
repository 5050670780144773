"""Ratio metrics (per-user numerator over per-user denominator) by the delta method.

For users with numerator ``x`` and denominator ``y`` the metric is
``R = sum(x) / sum(y) = mean_x / mean_y``; users, not events, are the independent units,
so by the delta method

    Var(R) = (var_x / mu_y**2 - 2 mu_x cov_xy / mu_y**3 + mu_x**2 var_y / mu_y**4) / n

with sample (co)variances from the sufficient statistics (``cross_sum = sum(x * y)``).
Ratio comparisons use z (the delta method is asymptotic).

>>> arm = ratio_arm(n=3, num_sum=6.0, num_sum_sq=14.0, den_sum=6.0, den_sum_sq=14.0, cross_sum=14.0)
>>> arm.mean, round(arm.se2, 12)
(1.0, 0.0)
"""

from __future__ import annotations

import numpy as np

from experiments.stats.means import Arm, Number, _scalar


def ratio_arm(
    n: Number, num_sum: Number, num_sum_sq: Number, den_sum: Number, den_sum_sq: Number, cross_sum: Number
) -> Arm:
    """Arm of a ratio metric: mean = sum(x) / sum(y), se2 by the delta method."""
    n_f = np.asarray(n, dtype=float)
    sx, sy = np.asarray(num_sum, float), np.asarray(den_sum, float)
    mx, my = sx / n_f, sy / n_f
    vx = (np.asarray(num_sum_sq, float) - sx * mx) / (n_f - 1.0)
    vy = (np.asarray(den_sum_sq, float) - sy * my) / (n_f - 1.0)
    cxy = (np.asarray(cross_sum, float) - sx * my) / (n_f - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mx / my
        var = (vx / my**2 - 2.0 * mx * cxy / my**3 + mx**2 * vy / my**4) / n_f
    return Arm(n=n, mean=_scalar(ratio), se2=_scalar(np.maximum(var, 0.0)))
