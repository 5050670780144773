"""Ratio metrics by the delta method against a linearization on raw rows, a bootstrap, and coverage."""

import numpy as np
import pytest
from scipy import stats

from experiments.stats.means import compare
from experiments.stats.ratio import ratio_arm


def _ratio_suff(x, y):
    return len(x), x.sum(), (x * x).sum(), y.sum(), (y * y).sum(), (x * y).sum()


@pytest.fixture(scope="module")
def users():
    rng = np.random.default_rng(21)
    plays = rng.poisson(30, 2000) + 1
    skips = rng.binomial(plays, rng.beta(3, 7, 2000))
    return skips.astype(float), plays.astype(float)


def test_ratio_variance_equals_the_linearized_formula(users):
    x, y = users
    arm = ratio_arm(*_ratio_suff(x, y))
    r = x.sum() / y.sum()
    linear = (x - r * y) / y.mean()  # influence function of the ratio
    assert arm.mean == pytest.approx(r, rel=1e-12)
    assert arm.se2 == pytest.approx(linear.var(ddof=1) / len(x), rel=1e-9)


def test_ratio_variance_matches_a_user_level_bootstrap(users):
    x, y = users
    rng = np.random.default_rng(22)
    idx = rng.integers(0, len(x), (4000, len(x)))
    boot = x[idx].sum(1) / y[idx].sum(1)
    assert np.sqrt(ratio_arm(*_ratio_suff(x, y)).se2) == pytest.approx(boot.std(ddof=1), rel=0.05)


def test_ratio_intervals_cover_a_known_effect():
    rng = np.random.default_rng(23)
    sims, n = 3000, 400
    def arm(p):
        y = rng.poisson(20, (sims, n)) + 1.0
        x = rng.binomial(y.astype(int), p).astype(float)
        return ratio_arm(n, x.sum(1), (x * x).sum(1), y.sum(1), (y * y).sum(1), (x * y).sum(1))
    eff = compare(arm(0.30), arm(0.33), welch=False)
    hit = np.abs(eff.estimate - 0.03) <= 1.959964 * eff.se
    assert stats.binomtest(int(hit.sum()), sims, 0.95).pvalue > 0.001
    rel_hit = np.abs(eff.relative - 0.1) <= 1.959964 * eff.relative_se
    assert abs(rel_hit.mean() - 0.95) < 0.015
