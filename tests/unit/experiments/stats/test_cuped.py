"""CUPED: theta and the adjusted effect against a least-squares regression on raw rows; coverage."""

import numpy as np
import pytest
from scipy import stats

from experiments.stats.cuped import CupedStats, adjusted_values, cuped_adjust, pooled_theta
from experiments.stats.means import compare


def _suff(y, x):
    return CupedStats(len(y), y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum())


@pytest.fixture(scope="module")
def three_arms():
    rng = np.random.default_rng(31)
    out = []
    for n, shift in ((900, 0.0), (1100, 1.5), (1000, -0.7)):
        pre = rng.gamma(2.0, 5.0, n)
        y = 3.0 + 0.8 * pre + shift + rng.normal(0, 4, n)
        out.append((y, pre))
    return out


def test_theta_and_effects_equal_the_ancova_regression(three_arms):
    ys = np.concatenate([y for y, _ in three_arms])
    pres = np.concatenate([x for _, x in three_arms])
    groups = np.repeat(np.arange(3), [len(y) for y, _ in three_arms])
    design = np.column_stack([np.ones_like(ys), groups == 1, groups == 2, pres]).astype(float)
    coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
    res = cuped_adjust([_suff(y, x) for y, x in three_arms])
    assert res.theta == pytest.approx(coef[3], rel=1e-9)
    assert res.arms[1].mean - res.arms[0].mean == pytest.approx(coef[1], rel=1e-9)
    assert res.arms[2].mean - res.arms[0].mean == pytest.approx(coef[2], rel=1e-9)


def test_adjusted_variance_matches_raw_adjusted_rows(three_arms):
    stats_ = [_suff(y, x) for y, x in three_arms]
    theta = pooled_theta(stats_)
    res = cuped_adjust(stats_)
    for (y, x), arm in zip(three_arms, res.arms, strict=True):
        adj = adjusted_values(y, x, theta)
        assert arm.se2 == pytest.approx(adj.var(ddof=1) / len(y), rel=1e-9)
    raw_var = sum((len(y) - 1) * y.var(ddof=1) for y, _ in three_arms)
    assert 0.5 < res.variance_reduction < 1.0
    assert res.variance_reduction == pytest.approx(
        1 - sum(a.se2 * a.n * (a.n - 1) for a in res.arms) / raw_var, rel=1e-9
    )


def test_cuped_intervals_cover_a_known_effect_and_are_narrower():
    rng = np.random.default_rng(33)
    sims, n, effect = 3000, 200, 0.5
    def arm(shift):
        pre = rng.normal(10, 3, (sims, n))
        y = 2 + 0.9 * pre + shift + rng.normal(0, 2, (sims, n))
        return y, pre
    (yc, xc), (yt, xt) = arm(0.0), arm(effect)
    hits, widths_ratio = [], []
    for i in range(sims):
        res = cuped_adjust([_suff(yc[i], xc[i]), _suff(yt[i], xt[i])])
        eff = compare(res.arms[0], res.arms[1], welch=True)
        hits.append(abs(eff.estimate - effect) <= stats.t.isf(0.025, eff.df) * eff.se)
        widths_ratio.append(res.variance_reduction)
    assert stats.binomtest(int(np.sum(hits)), sims, 0.95).pvalue > 0.001
    assert np.mean(widths_ratio) > 0.5
