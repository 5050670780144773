"""A sample ratio mismatch test valid under continuous monitoring.

The chi-square test of ``experiments.stats.srm`` is valid at one look; checked on every
update it fails an honest experiment sooner or later. This test is the Dirichlet-multinomial
mixture of Lindon and Malek (2022, "Anytime-valid inference for multinomial count data"):
with prior ``Dirichlet(concentration * weights)`` the Bayes factor against the configured split

    BF = B(alpha + counts) / B(alpha) / prod(p_i ** counts_i)

is a nonnegative martingale under the null, so ``P(BF ever >= 1/threshold) <= threshold``
(Ville's inequality), however often it is checked. The p-value is ``min(1, 1/BF)``.

>>> sequential_srm({"a": 5000, "b": 5000}, {"a": 1, "b": 1}).passed
True
>>> sequential_srm({"a": 5000, "b": 5600}, {"a": 1, "b": 1}).passed
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy.special import gammaln

from experiments.stats import SrmResult

DEFAULT_THRESHOLD = 0.001
#: The prior's total pseudo-count: larger waits for more users and detects small mismatches better.
CONCENTRATION = 100.0


def sequential_srm(counts: Mapping[str, int], weights: Mapping[str, float], *,
                   threshold: float = DEFAULT_THRESHOLD, concentration: float = CONCENTRATION) -> SrmResult:
    """Anytime-valid SRM check of ``counts`` against ``weights`` (same keys)."""
    names = list(counts)
    total_weight = sum(weights[v] for v in names)
    p = [weights[v] / total_weight for v in names]
    x = [int(counts[v]) for v in names]
    total = sum(x)
    expected = {v: total * share for v, share in zip(names, p, strict=True)}
    if total <= 0 or len(names) < 2:
        return SrmResult(None, None, True, dict(counts), expected, threshold)
    alpha = [concentration * share for share in p]
    log_bf = (_log_beta([a + c for a, c in zip(alpha, x, strict=True)]) - _log_beta(alpha)
              - sum(c * math.log(share) for c, share in zip(x, p, strict=True)))
    p_value = math.exp(-log_bf) if log_bf > 0 else 1.0
    return SrmResult(p_value=p_value, chi2=None, passed=p_value >= threshold, observed=dict(counts),
                     expected=expected, threshold=threshold)


def _log_beta(a: list[float]) -> float:
    return float(sum(gammaln(x) for x in a) - gammaln(sum(a)))
