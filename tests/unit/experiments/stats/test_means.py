"""Difference in means and proportions against scipy and closed forms; interval coverage."""

import numpy as np
import pytest
from scipy import stats

from experiments.stats.inference import FixedHorizon
from experiments.stats.means import compare, mean_arm, proportion_arm, sample_moments


def _suff(x):
    return len(x), float(x.sum()), float((x * x).sum())


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(11)
    return rng.lognormal(1.0, 0.8, 731), rng.lognormal(1.1, 0.9, 1203)


def test_sample_moments_match_numpy(samples):
    a, _ = samples
    mean, var = sample_moments(*_suff(a))
    assert mean == pytest.approx(a.mean(), rel=1e-12)
    assert var == pytest.approx(a.var(ddof=1), rel=1e-9)


def test_welch_matches_scipy_from_stats_and_raw_rows(samples):
    a, b = samples
    eff = compare(mean_arm(*_suff(a)), mean_arm(*_suff(b)), welch=True)
    ref = FixedHorizon(eff.df)
    p = ref.p_two_sided(eff.estimate / eff.se)
    from_stats = stats.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), len(b), a.mean(), a.std(ddof=1), len(a), equal_var=False
    )
    raw = stats.ttest_ind(b, a, equal_var=False)
    assert eff.estimate / eff.se == pytest.approx(raw.statistic, rel=1e-9)
    assert p == pytest.approx(from_stats.pvalue, rel=1e-8)
    assert p == pytest.approx(raw.pvalue, rel=1e-8)
    assert eff.df == pytest.approx(raw.df, rel=1e-9)
    ci = raw.confidence_interval(0.95)
    crit = ref.critical(0.05)
    assert eff.estimate - crit * eff.se == pytest.approx(ci.low, rel=1e-8)
    assert eff.estimate + crit * eff.se == pytest.approx(ci.high, rel=1e-8)


def test_z_test_is_the_normal_version(samples):
    a, b = samples
    eff = compare(mean_arm(*_suff(a)), mean_arm(*_suff(b)), welch=False)
    assert eff.df is None
    z = (b.mean() - a.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert FixedHorizon().p_two_sided(eff.estimate / eff.se) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_proportions_closed_form():
    eff = compare(proportion_arm(2000, 200.0), proportion_arm(1800, 234.0), welch=False)
    p1, p2 = 0.1, 0.13
    se = np.sqrt(p1 * (1 - p1) / 2000 + p2 * (1 - p2) / 1800)
    assert eff.estimate == pytest.approx(0.03, abs=1e-15)
    assert eff.se == pytest.approx(se, rel=1e-12)
    assert eff.relative == pytest.approx(0.3, rel=1e-12)
    rel_se = np.sqrt((p2 * (1 - p2) / 1800) / p1**2 + p2**2 * (p1 * (1 - p1) / 2000) / p1**4)
    assert eff.relative_se == pytest.approx(rel_se, rel=1e-12)


def test_relative_se_delta_method_matches_simulated_ratio_spread():
    rng = np.random.default_rng(3)
    n, mc, mt, sd = 400, 10.0, 11.0, 4.0
    xc = rng.normal(mc, sd, (20000, n)).mean(axis=1)
    xt = rng.normal(mt, sd, (20000, n)).mean(axis=1)
    empirical = np.std(xt / xc - 1)
    eff = compare(mean_arm(n, mc * n, (sd**2 + mc**2) * n), mean_arm(n, mt * n, (sd**2 + mt**2) * n), welch=True)
    assert eff.relative_se == pytest.approx(empirical, rel=0.03)


def _coverage(hits):
    k, n = int(hits.sum()), hits.size
    return stats.binomtest(k, n, 0.95).pvalue


def test_mean_and_relative_intervals_cover_a_known_effect():
    rng = np.random.default_rng(5)
    sims, n = 4000, 300
    c = rng.exponential(2.0, (sims, n))
    t = rng.exponential(2.2, (sims, n))
    eff = compare(mean_arm(n, c.sum(1), (c * c).sum(1)), mean_arm(n, t.sum(1), (t * t).sum(1)), welch=True)
    crit = stats.t.isf(0.025, eff.df)
    abs_hit = np.abs(eff.estimate - 0.2) <= crit * eff.se
    rel_hit = np.abs(eff.relative - 0.1) <= crit * eff.relative_se
    assert _coverage(abs_hit) > 0.001
    assert abs(rel_hit.mean() - 0.95) < 0.012


def test_proportion_interval_covers_a_known_effect():
    rng = np.random.default_rng(7)
    sims, n = 6000, 2500
    kc = rng.binomial(n, 0.10, sims)
    kt = rng.binomial(n, 0.12, sims)
    eff = compare(proportion_arm(n, kc), proportion_arm(n, kt), welch=False)
    hit = np.abs(eff.estimate - 0.02) <= 1.959964 * eff.se
    assert _coverage(hit) > 0.001
    rel_hit = np.abs(eff.relative - 0.2) <= 1.959964 * eff.relative_se
    assert abs(rel_hit.mean() - 0.95) < 0.012
