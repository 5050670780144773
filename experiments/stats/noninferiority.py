"""Non-inferiority tests for guardrails with a relative margin.

A guardrail with margin ``m`` (e.g. 0.02 = "at most 2 % worse") and direction ``d``
(+1 when higher is better, -1 when lower is better) tests, on the relative lift ``r``
and its delta-method standard error,

    H0: d * r <= -m   (worse than the margin)   against   H1: d * r > -m

with ``z = (d * r + m) / se_r`` and the one-sided p-value from the reference. The
matching interval is two-sided at level ``1 - 2 * alpha``, so its bound on the good
side of the margin decides non-inferiority; a bound entirely beyond the margin means
the guardrail is significantly worse than its margin.

>>> from experiments.stats.inference import FixedHorizon
>>> z, p = non_inferiority_test(relative=0.0, relative_se=0.01, margin=0.02, direction=1, ref=FixedHorizon())
>>> round(z, 3), round(p, 4)
(2.0, 0.0228)
"""

from __future__ import annotations

from experiments.stats.inference import Reference, one_sided_p


def non_inferiority_test(
    *, relative: float, relative_se: float, margin: float, direction: int, ref: Reference
) -> tuple[float, float]:
    """The z statistic and one-sided p-value of the non-inferiority test."""
    z = (direction * relative + margin) / relative_se
    return float(z), one_sided_p(ref, z)


def beyond_margin(*, relative_low: float, relative_high: float, margin: float, direction: int) -> bool:
    """True when the whole relative interval lies on the wrong side of the margin."""
    good_high = relative_high if direction > 0 else -relative_low
    return bool(good_high < -margin)
