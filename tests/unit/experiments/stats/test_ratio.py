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


def test_welch_on_the_delta_method_variance_matches_gbstats():
    # growthbook/growthbook (commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469, gbstats 0.8.0)
    # packages/stats/tests/test_gbstats.py::TestAnalyzeMetricDfFrequentist::test_get_metric_dfs_frequentist_ratio
    # (RATIO_STATISTICS_DF, relative lift, two-sided Welch t): expected=0.133333333, pValue=0.610663339 (9 decimals)
    from experiments.stats.inference import FixedHorizon

    control = ratio_arm(100, 270.0, 848.79, 510.0, 810.0, -900.0)
    treatment = ratio_arm(120, 300.0, 869.0, 500.0, 800.0, -905.0)
    eff = compare(control, treatment, welch=True)
    assert round(eff.relative, 9) == pytest.approx(0.133333333, abs=1e-12)
    p = FixedHorizon(eff.df).p_two_sided(eff.relative / eff.relative_se)
    assert round(p, 9) == pytest.approx(0.610663339, abs=1e-12)
    # Welch-Satterthwaite degrees of freedom of the two delta-method variances (closed form)
    a, b = control.se2, treatment.se2
    assert eff.df == pytest.approx((a + b) ** 2 / (a**2 / 99 + b**2 / 119), rel=1e-12)


def test_engine_takes_welch_for_ratio_metrics(users):
    from experiments.stats import analyse

    x, y = users
    half = len(x) // 2
    variants = []
    for name, sl in (("c", slice(None, half)), ("t", slice(half, None))):
        n, sx, sxx, sy, syy, sxy = _ratio_suff(x[sl], y[sl])
        variants.append({"name": name, "n": n, "sum": float(sx), "sum_sq": float(sxx), "den_sum": float(sy),
                         "den_sum_sq": float(syy), "cross_sum": float(sxy)})
    data = {"control": "c", "correction": "none", "decision_rule": "all_metrics_corrected",
            "metrics": [{"name": "skip_rate", "kind": "ratio", "role": "success", "method": "welch",
                         "variants": variants}]}
    out = analyse(data)
    c = out.metrics[0].comparisons[0]
    assert out.metrics[0].method == "welch" and c.df is not None and c.df < 2 * half
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(c.z), c.df), rel=1e-9)
    z_test = analyse(data | {"metrics": [data["metrics"][0] | {"method": "z"}]}).metrics[0].comparisons[0]
    assert z_test.df is None and z_test.p_value == pytest.approx(2 * stats.norm.sf(abs(z_test.z)), rel=1e-9)
