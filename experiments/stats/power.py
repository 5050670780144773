"""Power, sample size and minimum detectable effect for a two-sided z test of a difference in means.

``n_control`` users in control and ``ratio * n_control`` in treatment; ``sd`` is the
per-user standard deviation (for a proportion ``p``: ``sqrt(p (1 - p))``).

>>> math.ceil(sample_size_per_arm(sd=1.0, mde=0.2))
393
>>> round(achieved_power(sd=1.0, mde=0.2, n_control=393), 3)
0.801
>>> round(minimum_detectable_effect(sd=1.0, n_control=393), 4)
0.1999
"""

from __future__ import annotations

import math

from scipy import stats


def _se_factor(ratio: float) -> float:
    return math.sqrt(1.0 + 1.0 / ratio)


def sample_size_per_arm(
    *, sd: float, mde: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Control-arm size for ``power`` to detect an absolute difference ``mde`` at two-sided ``alpha``."""
    z = stats.norm.isf(alpha / 2.0) + stats.norm.isf(1.0 - power)
    return float((_se_factor(ratio) * sd * z / mde) ** 2)


def achieved_power(*, sd: float, mde: float, n_control: float, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Probability that the two-sided z test rejects when the true difference is ``mde``."""
    shift = abs(mde) / (_se_factor(ratio) * sd / math.sqrt(n_control))
    za = stats.norm.isf(alpha / 2.0)
    return float(stats.norm.sf(za - shift) + stats.norm.cdf(-za - shift))


def minimum_detectable_effect(
    *, sd: float, n_control: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Smallest absolute difference detected with ``power`` (ignoring the far tail)."""
    z = stats.norm.isf(alpha / 2.0) + stats.norm.isf(1.0 - power)
    return float(z * _se_factor(ratio) * sd / math.sqrt(n_control))


def proportion_sample_size_per_arm(
    *, baseline: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Per-arm size to detect ``baseline -> baseline * (1 + relative_mde)`` (unpooled variances)."""
    p1, p2 = baseline, baseline * (1.0 + relative_mde)
    z = stats.norm.isf(alpha / 2.0) + stats.norm.isf(1.0 - power)
    return float(z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2)
