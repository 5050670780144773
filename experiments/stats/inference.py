"""Reference distributions: how a z (or t) statistic becomes a p-value and an interval.

A reference answers two questions that are exact inverses of each other:
``p_two_sided(z) <= a`` exactly when ``abs(z) >= critical(a)``. Every interval in the
engine is ``estimate +- critical(level) * se``, so an interval excludes the null exactly
when the matching test rejects. The fixed-horizon reference is Student's t (Welch
degrees of freedom) or the normal; the sequential ones live in
:mod:`experiments.stats.sequential`.

>>> ref = FixedHorizon()
>>> round(ref.critical(0.05), 4), round(ref.p_two_sided(1.959964), 4)
(1.96, 0.05)
>>> round(one_sided_p(ref, 1.644854), 4)
0.05
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import special


class Reference(Protocol):
    name: str

    def p_two_sided(self, z: float) -> float: ...

    def critical(self, alpha: float) -> float: ...


class FixedHorizon:
    """One look at a fixed sample size: Student's t with ``df`` degrees of freedom, or normal."""

    name = "fixed_horizon"

    def __init__(self, df: float | None = None) -> None:
        self.df = None if df is None or not np.isfinite(df) else float(df)

    # scipy.special directly: the functions scipy.stats' t and norm call, without building a frozen
    # distribution (and formatting its docstring) at every test
    def _sf(self, x: float) -> float:
        return float(special.ndtr(-x) if self.df is None else special.stdtr(self.df, -x))

    def _isf(self, q: float) -> float:
        return float(-special.ndtri(q) if self.df is None else -special.stdtrit(self.df, q))

    def p_two_sided(self, z: float) -> float:
        return float(min(1.0, 2.0 * self._sf(abs(z))))

    def critical(self, alpha: float) -> float:
        return self._isf(alpha / 2.0)


def one_sided_p(ref: Reference, z: float) -> float:
    """P-value of the one-sided test rejecting for large ``z``, from a symmetric two-sided reference."""
    half = ref.p_two_sided(z) / 2.0
    return float(half if z >= 0 else 1.0 - half)
