"""Sequential testing: boundaries by Monte Carlo, and A/A false-positive rates when peeking daily."""

import numpy as np
import pytest
from scipy import stats

from experiments.stats.inference import FixedHorizon
from experiments.stats.means import compare, mean_arm
from experiments.stats.sequential import (
    AlwaysValid,
    GroupSequential,
    gbstats_eta2,
    group_sequential_boundaries,
    mixture_critical,
    normalize_looks,
    obf_spending,
    power_spending,
)

ALPHA = 0.05


def test_first_boundary_and_spending_closed_form():
    c = group_sequential_boundaries((0.25, 0.5, 1.0), ALPHA)
    assert c[0] == pytest.approx(stats.norm.isf(ALPHA / 2) / np.sqrt(0.25), rel=1e-9)
    assert obf_spending(1.0, ALPHA) == pytest.approx(ALPHA)
    assert group_sequential_boundaries((1.0,), ALPHA)[0] == pytest.approx(stats.norm.isf(ALPHA / 2))
    assert c[0] > c[1] > c[2] > stats.norm.isf(ALPHA / 2)


def test_boundaries_spend_alpha_as_planned_by_monte_carlo():
    looks = (0.1, 0.3, 0.45, 0.7, 1.0)
    c = np.array(group_sequential_boundaries(looks, ALPHA))
    rng = np.random.default_rng(51)
    t = np.array(looks)
    paths = np.cumsum(rng.standard_normal((400_000, len(t))) * np.sqrt(np.diff(np.r_[0, t])), axis=1)
    cross = np.abs(paths) / np.sqrt(t) >= c
    first = np.argmax(cross, axis=1)[cross.any(axis=1)]
    per_look = np.bincount(first, minlength=len(t)) / len(paths)
    planned = np.diff(np.r_[0.0, obf_spending(t, ALPHA)])
    assert per_look == pytest.approx(planned, abs=4 * np.sqrt(ALPHA / len(paths)))
    assert cross.any(axis=1).mean() == pytest.approx(ALPHA, abs=0.0015)


def test_repeated_p_value_is_consistent_with_the_boundary():
    ref = GroupSequential(normalize_looks([0.2, 0.4], 0.6))
    assert ref.looks == (0.2, 0.4, 0.6)
    for z in (0.5, 1.9, 2.3, 2.8, 4.0):
        p = ref.p_two_sided(z)
        for a in (0.01, 0.05, 0.1):
            if abs(p - a) > 1e-6:
                assert (p <= a) == (z >= ref.critical(a))
    single = GroupSequential((1.0,))
    assert single.p_two_sided(2.1) == pytest.approx(FixedHorizon().p_two_sided(2.1), rel=1e-5)


def test_always_valid_p_value_and_critical_are_inverse():
    ref = AlwaysValid(n=7000, tuning_n=5000, alpha=0.05)
    z = ref.critical(0.05)
    assert ref.p_two_sided(z) == pytest.approx(0.05, rel=1e-9)
    assert ref.critical(0.05) > stats.norm.isf(0.025)


@pytest.fixture(scope="module")
def aa_daily_z():
    """Welch z after each of 20 days, 4000 A/A experiments, 100 new users per arm per day (skewed data)."""
    rng = np.random.default_rng(52)
    sims, days, per_day = 4000, 20, 100
    def cumulative():
        x = rng.lognormal(0.0, 1.0, (sims, days, per_day))
        return np.cumsum(x.sum(2), 1), np.cumsum((x * x).sum(2), 1)
    (sc, ssc), (st, sst) = cumulative(), cumulative()
    n = per_day * np.arange(1, days + 1)
    eff = compare(mean_arm(n, sc, ssc), mean_arm(n, st, sst), welch=True)
    return eff.estimate / eff.se, eff.df, n


def _not_above(rejections, alpha=ALPHA):
    return stats.binomtest(int(rejections.sum()), rejections.size, alpha, alternative="greater").pvalue > 0.001


def test_aa_fixed_horizon_rate_is_alpha_and_naive_peeking_inflates_it(aa_daily_z):
    z, df, _ = aa_daily_z
    final = 2 * stats.t.sf(np.abs(z[:, -1]), df[:, -1]) <= ALPHA
    assert stats.binomtest(int(final.sum()), final.size, ALPHA).pvalue > 0.001
    naive = (2 * stats.t.sf(np.abs(z), df) <= ALPHA).any(axis=1)
    assert naive.mean() > 2 * ALPHA


def test_aa_group_sequential_daily_peeking_keeps_alpha(aa_daily_z):
    z, _, n = aa_daily_z
    looks = tuple(n / n[-1])
    c = np.array(group_sequential_boundaries(looks, ALPHA))
    rejected = (np.abs(z) >= c).any(axis=1)
    assert _not_above(rejected)
    assert rejected.mean() > 0.02  # it still spends its alpha


def test_aa_always_valid_daily_peeking_keeps_alpha(aa_daily_z):
    z, _, n = aa_daily_z
    crit = mixture_critical(ALPHA, 2 * n * gbstats_eta2(ALPHA, 2000))  # tuned for 2000 users in total
    rejected = (np.abs(z) >= crit).any(axis=1)
    assert _not_above(rejected)


def test_power_spending_matches_spotify_confidence():
    # spotify/confidence (commit e1f8a49291a0a1b2ba64d9150f0f231b04f72595) tests/frequentist/test_bounds.py::
    # test_seq_bounds_run_over: cumulative users 250, 450, 630, 810 against 300 expected (so t = n / 810),
    # two-sided alpha 0.01, rho = 2; adjusted alpha 2 (1 - Phi(zb)) == [0.00095, 0.00241, 0.00410, 0.00636]
    # (atol 1e-4 there; the source rounds to 5 decimals)
    looks = tuple(np.array([250, 450, 630, 810]) / 810)
    c = np.array(group_sequential_boundaries(looks, 0.010000000000000009, "power", 2.0))
    assert np.round(2 * stats.norm.sf(c), 5) == pytest.approx([0.00095, 0.00241, 0.00410, 0.00636], abs=1e-9)


def test_power_spending_closed_form_and_monte_carlo():
    assert power_spending(0.5, ALPHA, 3.0) == pytest.approx(ALPHA / 8)
    assert group_sequential_boundaries((0.25, 1.0), ALPHA, "power", 2.0)[0] == pytest.approx(
        stats.norm.isf(ALPHA * 0.25**2 / 2), rel=1e-9)
    looks = (0.2, 0.5, 0.8, 1.0)
    c = np.array(group_sequential_boundaries(looks, ALPHA, "power", 2.0))
    rng = np.random.default_rng(53)
    t = np.array(looks)
    paths = np.cumsum(rng.standard_normal((300_000, len(t))) * np.sqrt(np.diff(np.r_[0, t])), axis=1)
    cross = np.abs(paths) / np.sqrt(t) >= c
    first = np.argmax(cross, axis=1)[cross.any(axis=1)]
    per_look = np.bincount(first, minlength=len(t)) / len(paths)
    planned = np.diff(np.r_[0.0, power_spending(t, ALPHA, 2.0)])
    # 5 binomial standard errors of the largest share: each look fails by chance with p < 6e-7
    assert per_look == pytest.approx(planned, abs=5 * np.sqrt(ALPHA / len(paths)))


def _engine_relative(data):
    from experiments.stats import analyse
    return analyse(data).metrics[0].comparisons[0]


def _gbstats_case(variants, seq, kind="mean"):
    return {"control": "a", "correction": "none", "decision_rule": "all_metrics_corrected", "sequential": seq,
            "metrics": [{"name": "m", "kind": kind, "role": "success", "variants": variants}]}


def test_always_valid_matches_gbstats():
    # growthbook/growthbook (commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469, gbstats 0.8.0)
    # packages/stats/tests/frequentist/test_tests.py::TestSequentialTTest::test_sequential_test_runs:
    # SampleMeanStatistic(sum=1396.87, sum_squares=52377.9767, n=3000) vs (2422.7, 134698.29, 3461),
    # sequential_tuning_parameter=1000: expected=0.50336, ci=(-0.55844, 1.56516), stddev=0.33341, pValue=1
    c = _engine_relative(_gbstats_case(
        [{"name": "a", "n": 3000, "sum": 1396.87, "sum_sq": 52377.9767},
         {"name": "b", "n": 3461, "sum": 2422.7, "sum_sq": 134698.29}],
        {"method": "always_valid", "tuning_n": 1000}))
    rel = c.relative
    assert np.round([rel.estimate, rel.ci_low, rel.ci_high], 5) == pytest.approx([0.50336, -0.55844, 1.56516])
    assert c.reference == "always_valid" and c.p_value == 1.0
    # ... ::test_sequential_test_runs_prop: ProportionStatistic(sum=1396, n=3000) vs (2422, 3461), default
    # tuning (5000): expected=0.50386, ci=(0.40098, 0.60675), stddev=0.03386, pValue=0.0 (5 decimals)
    c = _engine_relative(_gbstats_case(
        [{"name": "a", "n": 3000, "sum": 1396}, {"name": "b", "n": 3461, "sum": 2422}],
        {"method": "always_valid"}, kind="proportion"))
    rel = c.relative
    assert np.round([rel.estimate, rel.ci_low, rel.ci_high], 5) == pytest.approx([0.50386, 0.40098, 0.60675])
    assert round(c.p_value, 5) == 0.0


def test_always_valid_tuning_is_tightest_near_the_sample_like_gbstats():
    # ... ::test_sequential_test_tuning_as_expected: tuning 10 gives a wider interval than 10000 and 6461
    # (the sample), 10000 a wider one than 6461
    widths = {}
    for tuning in (10, 6461, 10_000):
        ref = AlwaysValid(n=6461, tuning_n=tuning, alpha=ALPHA)
        widths[tuning] = ref.critical(ALPHA)
    assert widths[10] > widths[10_000] > widths[6461]
    grid = np.arange(500, 60_000, 250)
    best = grid[np.argmin([AlwaysValid(n=6461, tuning_n=t, alpha=ALPHA).critical(ALPHA) for t in grid])]
    assert abs(best - 6461) / 6461 < 0.05
