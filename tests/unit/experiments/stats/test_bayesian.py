"""The Bayesian engine against gbstats' own test figures (gbstats 0.8.0, GrowthBook repository).

Every expected figure below is copied from the named test of growthbook/growthbook (commit
8f1db4456915a8e7b7faf23d5632ca7219d2f469, packages/stats/pyproject.toml version 0.8.0). Where
the source rounds (``DECIMALS = 5`` in tests/bayesian/test_tests.py, ``DECIMALS = 9`` in
tests/test_gbstats.py), the comparison is at that rounding.
"""

import math

import pytest
from scipy import stats

from experiments.stats import analyse
from experiments.stats.bayesian import posterior_summary
from experiments.stats.means import compare, mean_arm, proportion_arm
from experiments.stats.ratio import ratio_arm


def _close(value, expected, decimals):
    assert round(value, decimals) == pytest.approx(expected, abs=10 ** -(decimals + 3)), (value, expected)


def _gbstats_relative(control, treatment, *, increase=True):
    eff = compare(control, treatment, welch=False)
    crit = stats.norm.isf(0.025)
    post = posterior_summary(mean=eff.relative, sd=eff.relative_se, increase=increase)
    return eff, (eff.relative - crit * eff.relative_se, eff.relative + crit * eff.relative_se), post


def test_binomial_matches_gbstats():
    # growthbook/growthbook packages/stats/tests/bayesian/test_tests.py::TestBinom::test_bayesian_binomial_ab_test
    # expected=0.04082, ci=(-0.24779, 0.32943), stddev=0.14725, chanceToWin=0.60918, risk=[0.0814, 0.04058]
    eff, ci, post = _gbstats_relative(proportion_arm(100, 49.0), proportion_arm(100, 51.0))
    for value, expected in ((eff.relative, 0.04082), (ci[0], -0.24779), (ci[1], 0.32943),
                            (eff.relative_se, 0.14725), (post.chance_to_win, 0.60918),
                            (post.risk_control, 0.0814), (post.risk, 0.04058)):
        _close(value, expected, 5)


def test_gaussian_matches_gbstats():
    # growthbook/growthbook packages/stats/tests/bayesian/test_tests.py::TestNorm::test_bayesian_gaussian_ab_test
    # expected=0.05, ci=(-0.02, 0.12), stddev=0.03572, chanceToWin=0.91923, risk=[0.05131, 0.00131]
    eff, ci, post = _gbstats_relative(mean_arm(10, 100.0, 1002.25), mean_arm(10, 105.0, 1111.5))
    for value, expected in ((eff.relative, 0.05), (ci[0], -0.02), (ci[1], 0.12), (eff.relative_se, 0.03572),
                            (post.chance_to_win, 0.91923), (post.risk_control, 0.05131), (post.risk, 0.00131)):
        _close(value, expected, 5)


def test_ratio_metric_matches_gbstats():
    # growthbook/growthbook packages/stats/tests/test_gbstats.py::TestAnalyzeMetricDfBayesian::
    # test_get_metric_dfs_bayesian_ratio (RATIO_STATISTICS_DF): expected=0.133333333, chanceToWin=0.694926359,
    # risk[1]=0.050934045 (9 decimals)
    eff, _, post = _gbstats_relative(ratio_arm(100, 270.0, 848.79, 510.0, 810.0, -900.0),
                                     ratio_arm(120, 300.0, 869.0, 500.0, 800.0, -905.0))
    _close(eff.relative, 0.133333333, 9)
    _close(post.chance_to_win, 0.694926359, 9)
    _close(post.risk, 0.050934045, 9)


def test_risk_matches_gbstats_bit_exact_regression():
    # growthbook/growthbook packages/stats/tests/bayesian/test_tests.py::TestGetRiskNumericalStability::
    # test_normal_inputs_bit_exact_regression: get_risk(0.1, 0.05) == [0.1004245351308, 0.0004245351308414]
    # (rounded to 10 decimals)
    post = posterior_summary(mean=0.1, sd=0.05, increase=True)
    assert round(post.risk_control, 10) == round(0.1004245351308, 10)
    assert round(post.risk, 10) == round(0.0004245351308414, 10)
    # ... and test_extreme_mu_over_sigma_no_overflow: get_risk(0.01, 4.5e-9) == [0.01, 0.0]
    extreme = posterior_summary(mean=0.01, sd=4.5e-9, increase=True)
    assert extreme.risk_control == pytest.approx(0.01, rel=1e-12) and extreme.risk == pytest.approx(0.0, abs=1e-300)


def test_inverse_metric_flips_chance_to_win_and_risk():
    up = posterior_summary(mean=0.03, sd=0.02, increase=True)
    down = posterior_summary(mean=0.03, sd=0.02, increase=False)
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win, rel=1e-12)
    assert (down.risk, down.risk_control) == pytest.approx((up.risk_control, up.risk), rel=1e-12)


def test_engine_reports_the_posterior_on_both_scales():
    # the gbstats TestNorm data through the engine, with a two-sided 95% interval (no correction)
    data = {"control": "a", "engine": "bayesian", "correction": "none", "decision_rule": "all_metrics_corrected",
            "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": [
                {"name": "a", "n": 10, "sum": 100.0, "sum_sq": 1002.25},
                {"name": "b", "n": 10, "sum": 105.0, "sum_sq": 1111.5}]}]}
    out = analyse(data)
    c = out.metrics[0].comparisons[0]
    assert out.engine == "bayesian" and c.reference == "bayesian_posterior" and c.df is None
    for value, expected in ((c.relative.estimate, 0.05), (c.relative.ci_low, -0.02), (c.relative.ci_high, 0.12),
                            (c.relative.chance_to_win, 0.91923), (c.relative.risk, 0.00131),
                            (c.relative.risk_control, 0.05131)):
        _close(value, expected, 5)
    # the absolute scale: posterior N(0.5, se^2) with se^2 = 0.25/10 + 1/10
    se = math.sqrt(0.025 + 0.1)
    assert c.absolute.chance_to_win == pytest.approx(stats.norm.cdf(0.5 / se), rel=1e-12)
    assert c.p_value == pytest.approx(2 * (1 - c.absolute.chance_to_win), rel=1e-9)  # two-sided
    doc = out.to_dict()["metrics"][0]["comparisons"][0]
    assert {"chance_to_win", "risk", "risk_control"} <= set(doc["relative"])
    frequentist = analyse(data | {"engine": "frequentist"}).to_dict()["metrics"][0]["comparisons"][0]
    assert set(frequentist["relative"]) == {"estimate", "ci_low", "ci_high"}


def test_bayesian_decision_uses_posterior_probabilities_under_the_risk_aware_rule():
    data = {"control": "a", "engine": "bayesian", "metrics": [{"name": "m", "kind": "proportion", "role": "success",
            "variants": [{"name": "a", "n": 5000, "sum": 500}, {"name": "b", "n": 5000, "sum": 580}]}]}
    c = analyse(data).metrics[0].comparisons[0]
    # one-sided: significant exactly when P(effect <= 0 | data) <= alpha, i.e. chance_to_win >= 0.95
    assert c.significant == (c.absolute.chance_to_win >= 0.95)
    assert c.p_value == pytest.approx(1 - c.absolute.chance_to_win, rel=1e-9)
    assert analyse(data).decision.verdict == "ship"
