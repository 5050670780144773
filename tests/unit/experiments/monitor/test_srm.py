"""The anytime-valid SRM test: honest splits pass every look; a broken split fails; the p-value is a bound."""

from __future__ import annotations

import numpy as np
from scipy import stats

from experiments.monitor import sequential_srm

THRESHOLD = 0.01  # a loose threshold, so the false-alarm count is large enough to be checked


def test_an_honest_split_checked_at_every_look_fails_no_more_often_than_the_threshold() -> None:
    rng = np.random.default_rng(20)
    replicates, looks, per_look = 400, 30, 100
    alarms = 0
    for _ in range(replicates):
        treated = np.cumsum(rng.binomial(per_look, 0.3, size=looks))
        totals = per_look * np.arange(1, looks + 1)
        alarms += any(
            not sequential_srm({"a": int(t - x), "b": int(x)}, {"a": 0.7, "b": 0.3}, threshold=THRESHOLD).passed
            for x, t in zip(treated, totals, strict=True)
        )
    # Ville's inequality: P(ever below the threshold) <= threshold, however many looks.
    assert alarms <= stats.binom.isf(1e-5, replicates, THRESHOLD)


def test_a_broken_split_fails_and_the_weights_need_not_be_normalized() -> None:
    assert not sequential_srm({"a": 5000, "b": 4500}, {"a": 1, "b": 1}).passed
    assert sequential_srm({"a": 700, "b": 300}, {"a": 7, "b": 3}).passed
    assert sequential_srm({"a": 0, "b": 0}, {"a": 1, "b": 1}).p_value is None
