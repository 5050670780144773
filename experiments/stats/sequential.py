"""Sequential testing: owners may look every day without inflating false positives.

Two methods, chosen by the input's ``"sequential"`` object:

* ``group_sequential``: Lan-DeMets alpha spending with the O'Brien-Fleming-type function
  ``alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))`` at information fractions ``t`` (the
  share of the planned sample seen). Two-sided symmetric boundaries ``c_1..c_K`` are found
  look by look so the probability of first crossing at look ``k`` under the null equals
  the alpha spent there, by numerical integration of the Brownian-motion density over
  the continuation region (Armitage-McPherson-Rowe recursion, Simpson's rule). The current
  look is the last; its p-value is the repeated p-value (the smallest alpha whose
  boundary the current statistic crosses) and its interval the repeated confidence
  interval ``estimate +- c_K(level) * se``.
* ``always_valid``: the normal-mixture confidence sequence (mSPRT, Johari et al. 2017;
  Howard et al. 2021). With mixing variance ``tau**2``, ``V = se**2`` and
  ``rho = V / tau**2``, the mixture likelihood ratio is
  ``Lambda = sqrt(rho / (1 + rho)) exp(z**2 / (2 (1 + rho)))``, valid at every look at
  once (Ville's inequality); p = min(1, 1 / Lambda). ``tau**2`` is the estimator's
  variance at ``tuning_n`` total users, so ``rho = tuning_n / n_total``.

Both use the normal approximation (no Student t).

>>> [round(c, 3) for c in group_sequential_boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05)]
[4.383, 3.1, 2.553, 2.254, 2.064]
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, special, stats

_C_MAX = 40.0  # a boundary this large is never crossed
_GRID_SD = 12.0  # the continuation density is tracked to +-12 standard deviations
_MAX_POINTS = 2001


def obf_spending(t: float | np.ndarray, alpha: float) -> float | np.ndarray:
    """Cumulative two-sided alpha spent by information fraction ``t`` (Lan-DeMets O'Brien-Fleming).

    >>> round(float(obf_spending(1.0, 0.05)), 10)
    0.05
    """
    t_arr = np.asarray(t, dtype=float)
    out = 2.0 * stats.norm.sf(stats.norm.isf(alpha / 2.0) / np.sqrt(t_arr))
    return float(out) if out.ndim == 0 else out


def _pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _simpson(npts: int, h: float) -> np.ndarray:
    w = np.ones(npts)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w * h / 3.0


def _grid(half: float, next_sd: float | None) -> np.ndarray:
    npts = 201 if next_sd is None else int(math.ceil(2.0 * half / (next_sd / 4.0))) + 1
    npts = min(max(npts, 201), _MAX_POINTS)
    npts += 1 - npts % 2  # Simpson needs an odd count
    return np.linspace(-half, half, npts)


@functools.lru_cache(maxsize=4096)
def group_sequential_boundaries(looks: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Two-sided z boundaries at the information fractions ``looks`` (strictly increasing, in (0, 1])."""
    spent = np.atleast_1d(obf_spending(np.asarray(looks), alpha))
    bounds: list[float] = []
    grid: np.ndarray | None = None
    wdens: np.ndarray | None = None
    t_prev = 0.0
    for k, t in enumerate(looks):
        target = float(spent[k] - (spent[k - 1] if k else 0.0))
        st = math.sqrt(t)
        if k == 0:
            ck = float(stats.norm.isf(target / 2.0)) if target > 0 else _C_MAX
        else:
            sd = math.sqrt(t - t_prev)
            g, w = grid, wdens

            def crossing(c: float, g=g, w=w, sd=sd, st=st) -> float:
                return float(w @ (special.ndtr((-c * st - g) / sd) + special.ndtr((g - c * st) / sd)))

            if target <= crossing(_C_MAX):
                ck = _C_MAX
            elif target >= crossing(0.0):
                ck = 0.0
            else:
                ck = float(optimize.brentq(lambda c, f=crossing, a=target: f(c) - a, 0.0, _C_MAX, xtol=1e-10))
        ck = min(ck, _C_MAX)
        bounds.append(ck)
        if k + 1 < len(looks):
            next_sd = math.sqrt(looks[k + 1] - t)
            new_grid = _grid(max(min(ck, _GRID_SD), 1e-6) * st, next_sd)
            if k == 0:
                dens = _pdf(new_grid / st) / st
            else:
                sd = math.sqrt(t - t_prev)
                if grid is None or wdens is None:  # set at the first look, k == 0
                    raise AssertionError("no density carried from the previous look")
                dens = (_pdf((new_grid[:, None] - grid[None, :]) / sd) @ wdens) / sd
            grid = new_grid
            wdens = dens * _simpson(len(new_grid), new_grid[1] - new_grid[0])
        t_prev = t
    return tuple(bounds)


def normalize_looks(looks: list[float] | tuple[float, ...], information_fraction: float) -> tuple[float, ...]:
    """Sorted distinct looks up to and including the current ``information_fraction``."""
    return tuple(sorted({round(float(x), 12) for x in looks} | {round(float(information_fraction), 12)}))


class GroupSequential:
    """Reference for the current (last) look of a group-sequential design."""

    name = "group_sequential"

    def __init__(self, looks: tuple[float, ...]) -> None:
        self.looks = tuple(looks)

    def critical(self, alpha: float) -> float:
        return group_sequential_boundaries(self.looks, float(alpha))[-1]

    def p_two_sided(self, z: float) -> float:
        """Repeated p-value: the smallest alpha whose current boundary ``|z|`` reaches."""
        z = abs(float(z))
        lo, hi = math.log(1e-12), math.log(0.999)
        if self.critical(math.exp(hi)) > z:
            return 1.0
        if self.critical(math.exp(lo)) <= z:
            return 1e-12
        root = optimize.brentq(lambda a: self.critical(math.exp(a)) - z, lo, hi, xtol=1e-7)
        return float(math.exp(root))

    def spent(self, alpha: float) -> float:
        return float(obf_spending(self.looks[-1], alpha))


def mixture_lambda(z: float | np.ndarray, rho: float | np.ndarray) -> float | np.ndarray:
    """Normal-mixture likelihood ratio for a z statistic, ``rho = V / tau**2``."""
    rho = np.asarray(rho, float)
    return np.sqrt(rho / (1.0 + rho)) * np.exp(np.asarray(z, float) ** 2 / (2.0 * (1.0 + rho)))


def mixture_critical(alpha: float, rho: float | np.ndarray) -> float | np.ndarray:
    """The ``|z|`` at which the mixture likelihood ratio reaches ``1 / alpha``."""
    rho = np.asarray(rho, float)
    out = np.sqrt((1.0 + rho) * (2.0 * math.log(1.0 / alpha) + np.log((1.0 + rho) / rho)))
    return float(out) if out.ndim == 0 else out


class AlwaysValid:
    """Reference of the always-valid normal-mixture confidence sequence."""

    name = "always_valid"

    def __init__(self, rho: float) -> None:
        self.rho = float(rho)

    def critical(self, alpha: float) -> float:
        return float(mixture_critical(alpha, self.rho))

    def p_two_sided(self, z: float) -> float:
        with np.errstate(over="ignore"):
            lam = float(mixture_lambda(z, self.rho))
        return float(min(1.0, 1.0 / lam)) if lam > 0 else 1.0
