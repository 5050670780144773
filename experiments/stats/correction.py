"""Multiple-testing correction across metrics and arms, with consistent interval levels.

``adjust(p, method)`` returns the adjusted p-values (reject when ``<= alpha``) and
the per-hypothesis interval levels ``alpha_i``. With ``q_i`` the *uncapped* adjusted
p-value,

    alpha_i = alpha * p_i / q_i

so ``p_i <= alpha_i`` exactly when ``q_i <= alpha``: an interval at level ``1 - alpha_i``
excludes the null exactly when the corrected test rejects. For Bonferroni that is the
familiar ``alpha / m``; for Holm it is at most ``alpha / (m - rank + 1)``. (When
``p_i == 0`` the level falls back to ``alpha / m``.)

Methods: ``none``, ``bonferroni``, ``holm`` (step-down), ``bh`` (Benjamini-Hochberg
step-up, false discovery rate).

>>> adj, levels = adjust([0.01, 0.04, 0.03], "holm", alpha=0.05)
>>> [round(x, 4) for x in adj], [round(x, 4) for x in levels]
([0.03, 0.06, 0.06], [0.0167, 0.0333, 0.025])
"""

from __future__ import annotations

import numpy as np

from experiments.stats.errors import StatsError

METHODS = ("none", "bonferroni", "holm", "bh")


def _uncapped(p: np.ndarray, method: str) -> np.ndarray:
    m = len(p)
    if method == "none":
        return p.copy()
    if method == "bonferroni":
        return p * m
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        stepped = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        stepped = np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise StatsError(f"unknown correction {method!r}; expected one of {METHODS}")
    out = np.empty(m)
    out[order] = stepped
    return out


def adjust(p_values: list[float], method: str, *, alpha: float) -> tuple[list[float], list[float]]:
    """Adjusted p-values and interval levels (see the module docstring)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return [], []
    q = _uncapped(p, method)
    fallback = alpha if method == "none" else alpha / p.size
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.where(q > 0, alpha * p / q, fallback)
    return np.minimum(q, 1.0).tolist(), levels.tolist()
