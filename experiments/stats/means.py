"""Difference in means from sufficient statistics: Welch's t or z, proportions, relative lift.

Everything here works on floats or numpy arrays alike (elementwise), so the same code
serves the engine and vectorized simulations.

An :class:`Arm` is a mean estimate and its variance (``se2``); :func:`compare` turns a
control and a treatment arm into an :class:`Effect`: the absolute difference
``treatment - control`` with its standard error, the relative lift
``treatment / control - 1`` with its delta-method standard error
``sqrt(se2_t / m_c**2 + m_t**2 * se2_c / m_c**4)``, and Welch-Satterthwaite degrees of
freedom (``None`` for a z test).

>>> c = mean_arm(n=100, total=1000.0, total_sq=10_400.0)
>>> t = mean_arm(n=100, total=1100.0, total_sq=12_500.0)
>>> e = compare(c, t, welch=True)
>>> round(float(e.estimate), 6), round(float(e.relative), 6)
(1.0, 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Number = Any  # a float or a numpy array of floats


@dataclass(frozen=True)
class Arm:
    """One variant's mean estimate: ``n`` units, ``mean``, ``se2`` = Var(mean)."""

    n: Number
    mean: Number
    se2: Number


@dataclass(frozen=True)
class Effect:
    """Treatment minus control, absolute and relative, with standard errors."""

    control_mean: Number
    treatment_mean: Number
    estimate: Number
    se: Number
    relative: Number
    relative_se: Number
    df: Number | None  # Welch-Satterthwaite degrees of freedom, None for a z test


def sample_moments(n: Number, total: Number, total_sq: Number) -> tuple[Number, Number]:
    """Mean and unbiased variance (``n - 1`` denominator) from ``n``, sum and sum of squares.

    >>> sample_moments(4, 10.0, 30.0)
    (2.5, 1.6666666666666667)
    """
    n = np.asarray(n, dtype=float)
    mean = np.asarray(total, dtype=float) / n
    var = (np.asarray(total_sq, dtype=float) - np.asarray(total, dtype=float) * mean) / (n - 1.0)
    var = np.maximum(var, 0.0)  # rounding can push a zero variance slightly negative
    return _scalar(mean), _scalar(var)


def mean_arm(n: Number, total: Number, total_sq: Number) -> Arm:
    """Arm of a mean metric: Var(mean) = sample variance / n."""
    mean, var = sample_moments(n, total, total_sq)
    return Arm(n=n, mean=mean, se2=_scalar(np.asarray(var) / np.asarray(n, dtype=float)))


def proportion_arm(n: Number, successes: Number) -> Arm:
    """Arm of a proportion: Var(p) = p (1 - p) / n (unpooled, so the test matches its interval).

    >>> proportion_arm(200, 50.0).se2
    0.0009375
    """
    n_f = np.asarray(n, dtype=float)
    p = np.asarray(successes, dtype=float) / n_f
    return Arm(n=n, mean=_scalar(p), se2=_scalar(p * (1.0 - p) / n_f))


def welch_df(control: Arm, treatment: Arm) -> Number:
    """Welch-Satterthwaite degrees of freedom of ``se2_c + se2_t``."""
    a, b = np.asarray(control.se2, float), np.asarray(treatment.se2, float)
    nc, nt = np.asarray(control.n, float), np.asarray(treatment.n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (a + b) ** 2 / (a**2 / (nc - 1.0) + b**2 / (nt - 1.0))
    return _scalar(df)


def compare(control: Arm, treatment: Arm, *, welch: bool) -> Effect:
    """Absolute and relative effect of ``treatment`` over ``control``."""
    mc, mt = np.asarray(control.mean, float), np.asarray(treatment.mean, float)
    sc, st = np.asarray(control.se2, float), np.asarray(treatment.se2, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mt / mc - 1.0
        rel_se = np.sqrt(st / mc**2 + mt**2 * sc / mc**4)
    return Effect(
        control_mean=_scalar(mc),
        treatment_mean=_scalar(mt),
        estimate=_scalar(mt - mc),
        se=_scalar(np.sqrt(sc + st)),
        relative=_scalar(rel),
        relative_se=_scalar(rel_se),
        df=welch_df(control, treatment) if welch else None,
    )


def _scalar(x: Number) -> Number:
    """Plain float for 0-d results, the array otherwise."""
    arr = np.asarray(x)
    return float(arr) if arr.ndim == 0 else arr
