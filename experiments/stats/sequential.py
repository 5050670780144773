"""Sequential testing: owners may look every day without inflating false positives.

Two methods, chosen by the input's ``"sequential"`` object:

* ``group_sequential``: Lan-DeMets alpha spending at information fractions ``t`` (the
  share of the planned sample seen), with the O'Brien-Fleming-type function
  ``alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))`` (``"obrien_fleming"``, the default) or
  the power family ``alpha(t) = alpha * t**rho`` (``"power"``, ``rho = 2`` by default: the
  spending spotify-confidence uses, with its conventions: bounds truncated at ``z = 8`` and a
  look whose increment of alpha is below ``1e-7`` per side spends nothing, its bound is 8).
  Two-sided symmetric boundaries ``c_1..c_K`` are found look by look so the probability of
  first crossing at look ``k`` under the null equals the alpha spent there, by numerical
  integration of the Brownian-motion density over the continuation region
  (Armitage-McPherson-Rowe recursion, Simpson's rule). The current look is the last; its
  p-value is the repeated p-value (the smallest alpha whose boundary the current statistic
  crosses) and its interval the repeated confidence
  interval ``estimate +- c_K(level) * se``.
* ``always_valid``: the normal-mixture confidence sequence (mSPRT, Johari et al. 2017;
  Howard et al. 2021) in GrowthBook's parameterization (gbstats ``SequentialTwoSidedTTest``,
  Waudby-Smith et al. 2023, eqs. 9 and 155). With ``n`` the users in the comparison and
  ``tuning_n`` gbstats' ``sequential_tuning_parameter``, the mixing parameter is
  ``eta**2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / tuning_n`` (chosen so the sequence is
  tightest near ``n = tuning_n``) and, with ``r = n eta**2``, the e-value of a z statistic is
  ``E = exp(z**2 r / (2 (r + 1))) / sqrt(r + 1)``, valid at every look at once (Ville's
  inequality); p = min(1, 1 / E). The interval's half-width is
  ``se * sqrt(2 (r + 1) / r * ln(sqrt(r + 1) / level))``. ``eta`` is fixed by the nominal
  alpha, so corrected levels use the same e-value and p-values and intervals stay exact
  inverses.

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
_Z_TRUNCATE = 8.0  # the power family's truncation (spotify-confidence's ztrun)
_MIN_SPEND_PER_SIDE = 1e-7  # ... and its smallest increment of alpha per side (ldbounds' tol)
_GRID_SD = 12.0  # the continuation density is tracked to +-12 standard deviations
_MAX_POINTS = 2001


SPENDINGS = ("obrien_fleming", "power")
DEFAULT_RHO = 2.0


def power_spending(t: float | np.ndarray, alpha: float, rho: float = DEFAULT_RHO) -> float | np.ndarray:
    """Cumulative alpha spent by information fraction ``t`` in the power family ``alpha * t**rho``.

    >>> round(float(power_spending(0.5, 0.05)), 10)
    0.0125
    """
    out = alpha * np.power(np.minimum(np.asarray(t, dtype=float), 1.0), rho)
    return float(out) if out.ndim == 0 else out


def spending(t: float | np.ndarray, alpha: float, kind: str = "obrien_fleming",
             rho: float = DEFAULT_RHO) -> float | np.ndarray:
    """Cumulative alpha spent by ``t`` under the spending function ``kind`` (see :data:`SPENDINGS`)."""
    if kind == "power":
        return power_spending(t, alpha, rho)
    return obf_spending(t, alpha)


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
def group_sequential_boundaries(looks: tuple[float, ...], alpha: float, kind: str = "obrien_fleming",
                                rho: float = DEFAULT_RHO) -> tuple[float, ...]:
    """Two-sided z boundaries at the information fractions ``looks`` (strictly increasing, in (0, 1])
    for the spending function ``kind`` (``rho``: the power family's exponent)."""
    spent = np.atleast_1d(spending(np.asarray(looks), alpha, kind, rho))
    # spotify-confidence's (ldbounds') conventions for the power family; O'Brien-Fleming keeps tandem's
    c_max, min_spend = (_Z_TRUNCATE, 2.0 * _MIN_SPEND_PER_SIDE) if kind == "power" else (_C_MAX, 0.0)
    bounds: list[float] = []
    grid: np.ndarray | None = None
    wdens: np.ndarray | None = None
    t_prev = 0.0
    for k, t in enumerate(looks):
        target = float(spent[k] - (spent[k - 1] if k else 0.0))
        st = math.sqrt(t)
        if k == 0:
            ck = float(stats.norm.isf(target / 2.0)) if target > 0 else c_max
        elif target < min_spend:
            ck = c_max
        else:
            sd = math.sqrt(t - t_prev)
            g, w = grid, wdens

            def crossing(c: float, g=g, w=w, sd=sd, st=st) -> float:
                return float(w @ (special.ndtr((-c * st - g) / sd) + special.ndtr((g - c * st) / sd)))

            if target <= crossing(c_max):
                ck = c_max
            elif target >= crossing(0.0):
                ck = 0.0
            else:
                ck = float(optimize.brentq(lambda c, f=crossing, a=target: f(c) - a, 0.0, c_max, xtol=1e-10))
        ck = min(ck, c_max)
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

    def __init__(self, looks: tuple[float, ...], kind: str = "obrien_fleming", rho: float = DEFAULT_RHO) -> None:
        self.looks = tuple(looks)
        self.kind = kind
        self.rho = float(rho)

    def critical(self, alpha: float) -> float:
        return group_sequential_boundaries(self.looks, float(alpha), self.kind, self.rho)[-1]

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
        return float(spending(self.looks[-1], alpha, self.kind, self.rho))


def gbstats_eta2(alpha: float, tuning_n: float) -> float:
    """gbstats' ``sequential_rho(alpha, tuning_n) ** 2`` (Waudby-Smith et al. 2023, eq. 161)."""
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / float(tuning_n)


def mixture_evalue(z: float | np.ndarray, r: float | np.ndarray) -> float | np.ndarray:
    """E-value of a z statistic with ``r = n eta**2``: ``exp(z**2 r / (2 (r + 1))) / sqrt(r + 1)``."""
    r = np.asarray(r, float)
    return np.exp(np.asarray(z, float) ** 2 * r / (2.0 * (r + 1.0))) / np.sqrt(r + 1.0)


def mixture_critical(alpha: float, r: float | np.ndarray) -> float | np.ndarray:
    """The ``|z|`` at which the e-value reaches ``1 / alpha``: the interval half-width in standard errors."""
    r = np.asarray(r, float)
    out = np.sqrt(2.0 * (r + 1.0) / r * np.log(np.sqrt(r + 1.0) / alpha))
    return float(out) if out.ndim == 0 else out


class AlwaysValid:
    """Reference of the always-valid normal-mixture confidence sequence (gbstats' parameterization).

    ``n`` is the number of users in the comparison (control plus treatment), ``tuning_n`` gbstats'
    ``sequential_tuning_parameter`` and ``alpha`` the nominal level that fixes the mixture.
    """

    name = "always_valid"

    def __init__(self, *, n: float, tuning_n: float, alpha: float) -> None:
        self.r = float(n) * gbstats_eta2(alpha, tuning_n)

    def critical(self, alpha: float) -> float:
        return float(mixture_critical(alpha, self.r))

    def p_two_sided(self, z: float) -> float:
        with np.errstate(over="ignore"):
            e = float(mixture_evalue(z, self.r))
        return float(min(1.0, 1.0 / e)) if e > 0 else 1.0
