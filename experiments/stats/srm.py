"""Sample ratio mismatch: a chi-square goodness-of-fit test and an anytime-valid multinomial test.

The observed counts are compared with ``total * weight / sum(weights)``; ``p <
threshold`` (0.001 by default) means the split is not what was configured, the
assignment or logging is broken, and the engine refuses to decide.

The chi-square test is valid for one look. A live experiment is checked after every
update, and repeated chi-square tests raise false alarms far above the threshold. The
anytime-valid test (Lindon and Malek, "Anytime-valid inference for multinomial count
data", NeurIPS 2022) uses the Dirichlet-multinomial Bayes factor against the configured
probabilities ``p``, with prior ``Dirichlet(k p)`` (``k = 100``)::

    BF = B(k p + x) / B(k p) / prod(p_i ** x_i),   p_anytime = min(1, 1 / BF)

``BF`` is a nonnegative martingale under the null, so by Ville's inequality
``P(p_anytime <= a at any look) <= a``: it can be checked after every user.

>>> r = srm_check({"control": 5000, "treatment": 5000}, {"control": 1, "treatment": 1})
>>> r.p_value, r.passed
(1.0, True)
>>> srm_check({"control": 5000, "treatment": 5400}, {"control": 1, "treatment": 1}).passed
False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

DEFAULT_THRESHOLD = 0.001


DIRICHLET_CONCENTRATION = 100.0


def anytime_valid_p(counts: np.ndarray, probabilities: np.ndarray,
                    concentration: float = DIRICHLET_CONCENTRATION) -> np.ndarray:
    """Anytime-valid p-value(s) of multinomial ``counts`` (last axis: variants) against ``probabilities``.

    >>> float(anytime_valid_p(np.array([0, 0]), np.array([0.5, 0.5])))
    1.0
    """
    x = np.asarray(counts, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    p = p / p.sum()
    a = concentration * p
    log_bf = (special.gammaln(a.sum()) - special.gammaln(a.sum() + x.sum(axis=-1))
              + (special.gammaln(a + x) - special.gammaln(a)).sum(axis=-1) - (x * np.log(p)).sum(axis=-1))
    out = np.minimum(1.0, np.exp(-np.clip(log_bf, -700.0, 700.0)))
    return out


@dataclass(frozen=True)
class SrmResult:
    p_value: float | None  # None when there are no users yet
    chi2: float | None
    passed: bool
    observed: dict[str, int]
    expected: dict[str, float]
    threshold: float
    anytime_p_value: float | None = None
    test: str = "chi_square"  # which p-value ``passed`` compares with ``threshold``


def srm_check(
    counts: dict[str, int], weights: dict[str, float], *, threshold: float = DEFAULT_THRESHOLD,
    test: str = "chi_square",
) -> SrmResult:
    """Chi-square and anytime-valid tests of ``counts`` against the split ``weights`` (same keys);
    ``test`` (chi_square | anytime_valid) names the one that decides ``passed``."""
    names = list(counts)
    observed = np.array([counts[v] for v in names], dtype=float)
    w = np.array([weights[v] for v in names], dtype=float)
    total = observed.sum()
    expected = total * w / w.sum()
    if total <= 0 or len(names) < 2:
        return SrmResult(None, None, True, dict(counts), dict(zip(names, expected.tolist(), strict=True)), threshold,
                         None, test)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    p = float(special.chdtrc(len(names) - 1, chi2))  # what scipy.stats.chisquare computes, without its overhead
    anytime = float(anytime_valid_p(observed, w))
    decisive = anytime if test == "anytime_valid" else float(p)
    return SrmResult(
        p_value=float(p),
        chi2=float(chi2),
        passed=bool(decisive >= threshold),
        observed=dict(counts),
        expected=dict(zip(names, expected.tolist(), strict=True)),
        threshold=threshold,
        anytime_p_value=anytime,
        test=test,
    )
