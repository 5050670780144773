"""Sample ratio mismatch: a chi-square goodness-of-fit test of the variant counts.

The observed counts are compared with ``total * weight / sum(weights)``; ``p <
threshold`` (0.001 by default) means the split is not what was configured, the
assignment or logging is broken, and the engine refuses to decide.

>>> r = srm_check({"control": 5000, "treatment": 5000}, {"control": 1, "treatment": 1})
>>> r.p_value, r.passed
(1.0, True)
>>> srm_check({"control": 5000, "treatment": 5400}, {"control": 1, "treatment": 1}).passed
False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    p_value: float | None  # None when there are no users yet
    chi2: float | None
    passed: bool
    observed: dict[str, int]
    expected: dict[str, float]
    threshold: float


def srm_check(
    counts: dict[str, int], weights: dict[str, float], *, threshold: float = DEFAULT_THRESHOLD
) -> SrmResult:
    """Chi-square test of ``counts`` against the split ``weights`` (same keys)."""
    names = list(counts)
    observed = np.array([counts[v] for v in names], dtype=float)
    w = np.array([weights[v] for v in names], dtype=float)
    total = observed.sum()
    expected = total * w / w.sum()
    if total <= 0 or len(names) < 2:
        return SrmResult(None, None, True, dict(counts), dict(zip(names, expected.tolist(), strict=True)), threshold)
    chi2, p = stats.chisquare(observed, expected)
    return SrmResult(
        p_value=float(p),
        chi2=float(chi2),
        passed=bool(p >= threshold),
        observed=dict(counts),
        expected=dict(zip(names, expected.tolist(), strict=True)),
        threshold=threshold,
    )
