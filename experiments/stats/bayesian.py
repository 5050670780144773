"""The Bayesian engine: gbstats' default effect model (``EffectBayesianABTest`` with its default prior).

gbstats models an effect (absolute difference or relative lift) as normal with the data's
mean ``m`` and variance ``s**2`` (the same delta-method moments as the frequentist engine)
and, by default, a flat improper prior (``GaussianPrior(mean=0, variance=1, proper=False)``).
The posterior is then ``N(m, s**2)`` and, for a metric where higher is better:

* ``chance_to_win = P(effect > 0) = Phi(m / s)``;
* the credible interval at level ``1 - a``: ``m +- Phi^-1(1 - a / 2) s``;
* ``risk`` of shipping the treatment, ``E[max(0, -effect)] = s phi(m / s) - m Phi(-m / s)``,
  and ``risk_control`` of keeping the control, ``E[max(0, effect)] = s phi(m / s) + m Phi(m / s)``.

For a metric where lower is better (gbstats' ``inverse``) the effect's sign is flipped first.

Decisions under the Bayesian engine use the same rule as the frequentist one with posterior
probabilities in place of p-values: a one-sided test "rejects" at level ``a`` when the
posterior probability of the wrong sign is ``<= a`` (``chance_to_win >= 1 - a``), and a
two-sided one when the credible interval at level ``1 - a`` excludes zero. With the flat
prior these equal the z test's p-values, so the multiple-testing corrections and the
interval levels carry over unchanged; no sequential correction is offered (the input
rejects a ``sequential`` block with this engine).

>>> p = posterior_summary(mean=0.04082, sd=0.14725, increase=True)
>>> round(p.chance_to_win, 4), round(p.risk, 4), round(p.risk_control, 4)
(0.6092, 0.0406, 0.0814)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from experiments.stats.inference import FixedHorizon


@dataclass(frozen=True)
class Posterior:
    """Posterior summary of one effect, in the metric's good direction."""

    chance_to_win: float
    risk: float
    risk_control: float


def posterior_summary(*, mean: float, sd: float, increase: bool) -> Posterior:
    """Chance to win and the two risks of an effect with posterior ``N(mean, sd**2)``."""
    mu = mean if increase else -mean
    if not (sd > 0 and math.isfinite(sd) and math.isfinite(mu)):
        return Posterior(math.nan, math.nan, math.nan)
    k = mu / sd
    density = math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi)
    return Posterior(
        chance_to_win=float(special.ndtr(k)),
        risk=float(sd * density - mu * special.ndtr(-k)),
        risk_control=float(sd * density + mu * special.ndtr(k)),
    )


class BayesianPosterior(FixedHorizon):
    """Reference of the flat-prior normal posterior: posterior tail probabilities and credible intervals."""

    name = "bayesian_posterior"

    def __init__(self) -> None:
        super().__init__(None)
