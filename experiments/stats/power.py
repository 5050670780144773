"""Power, sample size and minimum detectable effect for a z test of a difference in means.

``n_control`` users in control and ``ratio * n_control`` in treatment; ``sd`` is the
per-user standard deviation (for a proportion ``p``: ``sqrt(p (1 - p))``) and
``sd_treatment`` the treatment's under the alternative (default ``sd``). ``sides=1`` plans a
one-sided test (the risk-aware rule's superiority and non-inferiority tests).

Under the risk-aware rule a variant ships only if one success test *and* every one of the
``G`` guardrail tests succeed, so each is planned with power ``1 - beta / (G + 1)`` (by the
union bound the rule then has power ``>= 1 - beta``); without success metrics ``1 - beta / G``
(spotify-confidence's ``add_adjusted_power``).

>>> math.ceil(sample_size_per_arm(sd=1.0, mde=0.2))
393
>>> round(achieved_power(sd=1.0, mde=0.2, n_control=393), 3)
0.801
>>> round(minimum_detectable_effect(sd=1.0, n_control=393), 4)
0.1999
"""

from __future__ import annotations

import math

from scipy import special


def _isf(q: float) -> float:
    return float(-special.ndtri(q))  # stats.norm.isf without scipy's per-call argument handling


def _se_factor(ratio: float, sd: float = 1.0, sd_treatment: float | None = None) -> float:
    """``sqrt(var_c + var_t / ratio)`` per control user (``sqrt(1 + 1 / ratio)`` for unit variances)."""
    sd_t = sd if sd_treatment is None else sd_treatment
    return math.sqrt(sd * sd + sd_t * sd_t / ratio) if sd_treatment is not None else math.sqrt(1.0 + 1.0 / ratio)


def guardrail_power(power: float, *, guardrails: int, success_metrics: int) -> float:
    """Per-test power of the risk-aware rule: ``1 - beta / (G + 1)`` (``1 - beta / G`` without success metrics).

    >>> round(guardrail_power(0.8, guardrails=3, success_metrics=2), 10)
    0.95
    """
    parts = guardrails + (1 if success_metrics > 0 else 0)
    return 1.0 - (1.0 - power) / max(parts, 1)


def sample_size_per_arm(
    *, sd: float, mde: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0, sides: int = 2,
    sd_treatment: float | None = None,
) -> float:
    """Control-arm size for ``power`` to detect an absolute difference ``mde`` at level ``alpha``."""
    z = _isf(alpha / sides) + _isf(1.0 - power)
    if sd_treatment is None:
        return float((_se_factor(ratio) * sd * z / mde) ** 2)
    return float((_se_factor(ratio, sd, sd_treatment) * z / mde) ** 2)


def achieved_power(*, sd: float, mde: float, n_control: float, alpha: float = 0.05, ratio: float = 1.0,
                   sides: int = 2, sd_treatment: float | None = None) -> float:
    """Probability that the z test rejects (in the direction of ``mde`` when one-sided) at the true ``mde``."""
    per_user = _se_factor(ratio) * sd if sd_treatment is None else _se_factor(ratio, sd, sd_treatment)
    shift = abs(mde) / (per_user / math.sqrt(n_control))
    za = _isf(alpha / sides)
    far_tail = special.ndtr(-za - shift) if sides == 2 else 0.0
    return float(special.ndtr(shift - za) + far_tail)


def minimum_detectable_effect(
    *, sd: float, n_control: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Smallest absolute difference detected with ``power`` (ignoring the far tail)."""
    z = _isf(alpha / 2.0) + _isf(1.0 - power)
    return float(z * _se_factor(ratio) * sd / math.sqrt(n_control))


def proportion_sample_size_per_arm(
    *, baseline: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Per-arm size to detect ``baseline -> baseline * (1 + relative_mde)`` (unpooled variances)."""
    p1, p2 = baseline, baseline * (1.0 + relative_mde)
    z = _isf(alpha / 2.0) + _isf(1.0 - power)
    return float(z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2)
