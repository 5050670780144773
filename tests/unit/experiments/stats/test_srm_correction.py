"""SRM against scipy's chi-square; Bonferroni, Holm and Benjamini-Hochberg against references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from experiments.stats.correction import adjust
from experiments.stats.srm import srm_check


def test_srm_matches_scipy_chisquare_with_weights():
    counts = {"control": 10210, "a": 9870, "b": 5030}
    weights = {"control": 2.0, "a": 2.0, "b": 1.0}
    res = srm_check(counts, weights)
    total = sum(counts.values())
    ref = stats.chisquare([10210, 9870, 5030], [total * 0.4, total * 0.4, total * 0.2])
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert res.passed == bool(ref.pvalue >= 0.001)


def test_srm_fails_on_a_broken_split_and_passes_without_users():
    assert not srm_check({"c": 10000, "t": 10600}, {"c": 1, "t": 1}).passed
    empty = srm_check({"c": 0, "t": 0}, {"c": 1, "t": 1})
    assert empty.p_value is None and empty.passed


def _holm_reference(p, alpha):
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for k, i in enumerate(order):
        if p[i] <= alpha / (len(p) - k):
            rejected.add(i)
        else:
            break
    return rejected


def test_holm_matches_the_step_down_procedure_and_hand_values():
    p = [0.01, 0.04, 0.03, 0.005]
    adj, _ = adjust(p, "holm", alpha=0.05)
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    for alpha in (0.01, 0.02, 0.03, 0.05, 0.1):
        assert {i for i, q in enumerate(adj) if q <= alpha} == _holm_reference(p, alpha)


def test_bh_matches_scipy_false_discovery_control():
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 15)])
    adj, _ = adjust(p.tolist(), "bh", alpha=0.05)
    assert adj == pytest.approx(stats.false_discovery_control(p, method="bh").tolist(), rel=1e-12)


def test_bonferroni_levels_are_alpha_over_m():
    adj, levels = adjust([0.01, 0.5, 0.02], "bonferroni", alpha=0.05)
    assert adj == pytest.approx([0.03, 1.0, 0.06])
    assert levels == pytest.approx([0.05 / 3] * 3)


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(min_value=1e-9, max_value=1.0), min_size=1, max_size=12),
    method=st.sampled_from(["none", "bonferroni", "holm", "bh"]),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_interval_levels_agree_with_the_corrected_decisions(p, method, alpha):
    adj, levels = adjust(p, method, alpha=alpha)
    for pi, q, lvl in zip(p, adj, levels, strict=True):
        assert pi <= q + 1e-15
        assert 0 < lvl <= alpha + 1e-15
        if abs(q - alpha) > 1e-9:  # away from the knife edge, "p <= level" is "adjusted p <= alpha"
            assert (pi <= lvl) == (q <= alpha)


def test_anytime_valid_srm_is_the_dirichlet_multinomial_bayes_factor():
    # No published figure of Lindon and Malek's test exists in gbstats' or spotify-confidence's tests; checked
    # against the independent closed form: the Dirichlet-multinomial marginal over the multinomial likelihood
    # (the multinomial coefficients cancel), from scipy's own distributions
    from experiments.stats.srm import anytime_valid_p

    p = np.array([0.4, 0.4, 0.2])
    x = np.array([4130, 3950, 1920])
    bf = stats.dirichlet_multinomial.pmf(x, 100 * p, x.sum()) / stats.multinomial.pmf(x, x.sum(), p)
    assert float(anytime_valid_p(x, p)) == pytest.approx(min(1.0, 1 / bf), rel=1e-9)
    two = np.array([5210, 4790])
    bf2 = stats.betabinom.pmf(5210, 10000, 50, 50) / stats.binom.pmf(5210, 10000, 0.5)
    assert float(anytime_valid_p(two, np.array([1.0, 1.0]))) == pytest.approx(min(1.0, 1 / bf2), rel=1e-9)
    res = srm_check({"c": 5210, "t": 4790}, {"c": 1, "t": 1}, test="anytime_valid")
    assert res.anytime_p_value == pytest.approx(1 / bf2, rel=1e-9) and res.test == "anytime_valid"
    assert res.p_value == pytest.approx(stats.chisquare([5210, 4790]).pvalue, rel=1e-12)  # still reported


def test_anytime_valid_srm_keeps_its_alpha_under_peeking_while_chi_square_does_not():
    """2000 A/A experiments, a look after every 100 users up to 10 000: the share that ever alarms."""
    from experiments.stats.srm import anytime_valid_p

    alpha, replicates, looks = 0.05, 2000, 100
    rng = np.random.default_rng(61)
    first = np.cumsum(rng.binomial(100, 0.5, (replicates, looks)), axis=1)
    total = 100 * np.arange(1, looks + 1)
    counts = np.stack([first, total - first], axis=-1)
    anytime_alarm = (anytime_valid_p(counts, np.array([0.5, 0.5])) <= alpha).any(axis=1)
    chi2 = ((counts - total[:, None] / 2) ** 2 / (total[:, None] / 2)).sum(axis=-1)
    chi_alarm = (stats.chi2.sf(chi2, 1) <= alpha).any(axis=1)
    tail = 1e-5
    assert anytime_alarm.sum() <= stats.binom.isf(tail, replicates, alpha)
    assert chi_alarm.sum() >= stats.binom.isf(tail, replicates, alpha) + 1  # significantly above alpha
    assert chi_alarm.mean() > 4 * alpha
