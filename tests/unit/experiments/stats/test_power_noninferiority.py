"""Power and sample size against closed forms and simulation; non-inferiority against its formula."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.stats.inference import FixedHorizon
from experiments.stats.noninferiority import beyond_margin, non_inferiority_test
from experiments.stats.power import (
    achieved_power,
    guardrail_power,
    minimum_detectable_effect,
    proportion_sample_size_per_arm,
    sample_size_per_arm,
)


def test_sample_size_closed_form_and_round_trip():
    n = sample_size_per_arm(sd=2.0, mde=0.5, alpha=0.05, power=0.9)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.9)
    assert n == pytest.approx(2 * (2.0 * z / 0.5) ** 2, rel=1e-12)
    assert achieved_power(sd=2.0, mde=0.5, n_control=n) == pytest.approx(0.9, abs=1e-6)
    assert minimum_detectable_effect(sd=2.0, n_control=n, power=0.9) == pytest.approx(0.5, rel=1e-12)
    assert sample_size_per_arm(sd=2.0, mde=0.5, ratio=2.0) < sample_size_per_arm(sd=2.0, mde=0.5)


def test_proportion_sample_size_textbook_value():
    # 10 % -> 12 %: (1.959964 + 0.841621)^2 (0.09 + 0.1056) / 0.02^2 = 3838.10
    assert proportion_sample_size_per_arm(baseline=0.10, relative_mde=0.2) == pytest.approx(3838.10, abs=0.01)


def test_power_holds_in_simulation():
    rng = np.random.default_rng(41)
    n = math.ceil(sample_size_per_arm(sd=1.0, mde=0.25, power=0.8))
    sims = 4000
    c = rng.normal(0, 1, (sims, n))
    t = rng.normal(0.25, 1, (sims, n))
    z = (t.mean(1) - c.mean(1)) / np.sqrt(c.var(1, ddof=1) / n + t.var(1, ddof=1) / n)
    rate = np.mean(np.abs(z) >= 1.959964)
    assert stats.binomtest(int(rate * sims), sims, achieved_power(sd=1.0, mde=0.25, n_control=n)).pvalue > 0.001


def test_non_inferiority_p_value_closed_form_both_directions():
    z, p = non_inferiority_test(relative=-0.01, relative_se=0.008, margin=0.02, direction=1, ref=FixedHorizon())
    assert z == pytest.approx(0.01 / 0.008)
    assert p == pytest.approx(stats.norm.sf(0.01 / 0.008), rel=1e-12)
    # lower is better: a 1 % rise is 1 % worse
    z2, p2 = non_inferiority_test(relative=0.01, relative_se=0.008, margin=0.02, direction=-1, ref=FixedHorizon())
    assert (z2, p2) == pytest.approx((z, p))
    _, p_t = non_inferiority_test(relative=0.0, relative_se=0.01, margin=0.02, direction=1, ref=FixedHorizon(30))
    assert p_t == pytest.approx(stats.t.sf(2.0, 30), rel=1e-12)


def test_non_inferiority_decision_matches_its_interval_bound():
    ref = FixedHorizon()
    for rel in np.linspace(-0.06, 0.03, 37):
        _, p = non_inferiority_test(relative=rel, relative_se=0.01, margin=0.02, direction=1, ref=ref)
        low = rel - ref.critical(0.10) * 0.01  # two-sided 90 % interval, one-sided 5 % test
        assert (p <= 0.05) == (low > -0.02)


def test_beyond_margin_respects_direction():
    assert beyond_margin(relative_low=-0.08, relative_high=-0.03, margin=0.02, direction=1)
    assert not beyond_margin(relative_low=-0.08, relative_high=-0.01, margin=0.02, direction=1)
    assert beyond_margin(relative_low=0.03, relative_high=0.08, margin=0.02, direction=-1)
    assert not beyond_margin(relative_low=-0.08, relative_high=-0.03, margin=0.02, direction=-1)


def _confidence_total(*, weights=(5000, 2000), **kw):
    """Total users (control + treatment) as spotify-confidence's SampleSizeCalculator reports them."""
    ratio = weights[1] / weights[0]
    return sample_size_per_arm(ratio=ratio, **kw) * (1 + ratio)


# spotify/confidence (commit e1f8a49291a0a1b2ba64d9150f0f231b04f72595) tests/frequentist/
# test_freqsamplesizecalculator.py, treatment_weights [5000, 2000], correction SPOT_1; metrics:
# share_bananas_1d (binary, avg 0.7, var 0.21) and bananas_per_user_7d (avg 4.56, var 2.13). The source
# rounds to whole users and asserts within 0.1%; these agree within 1e-4.
_BINARY_SD, _MEAN_SD = math.sqrt(0.21), math.sqrt(2.13)
_BINARY_MDE, _MEAN_MDE = 0.7 * 0.00617, 4.56 * 0.01
_P_ALT = 0.7 * 1.00617


def test_sample_size_of_a_two_sided_success_metric_matches_confidence():
    # ::test_sample_size_6: bananas_per_user_7d, mde 1%, no preference, interval 0.99, power 0.8 -> 58622
    n = _confidence_total(sd=_MEAN_SD, mde=_MEAN_MDE, alpha=0.01, power=0.8, sides=2)
    assert n == pytest.approx(58622, rel=1e-4)


def test_sample_size_of_a_lone_guardrail_matches_confidence():
    # ::test_sample_size_5: share_bananas_1d as a guardrail (nim 0.00617, increase), interval 0.99, power 0.8
    # -> 553620; without success metrics the guardrail keeps power 1 - beta / G = 0.8
    power = guardrail_power(0.8, guardrails=1, success_metrics=0)
    assert power == pytest.approx(0.8)
    n = _confidence_total(sd=_BINARY_SD, mde=_BINARY_MDE, alpha=0.01, power=power, sides=1)
    assert n == pytest.approx(553620, rel=1e-4)


def test_guardrail_power_is_raised_to_one_minus_beta_over_g_plus_one_as_in_confidence():
    # ::test_sample_size_4: share_bananas_1d guardrail (nim) + bananas_per_user_7d success (increase),
    # interval 0.99, power 0.8 -> 718056 and 65337: both tests planned at power 1 - 0.2 / 2 = 0.9, one-sided
    # at alpha (one success metric: no correction)
    power = guardrail_power(0.8, guardrails=1, success_metrics=1)
    assert power == pytest.approx(0.9)
    guard = _confidence_total(sd=_BINARY_SD, mde=_BINARY_MDE, alpha=0.01, power=power, sides=1)
    success = _confidence_total(sd=_MEAN_SD, mde=_MEAN_MDE, alpha=0.01, power=power, sides=1)
    assert (guard, success) == pytest.approx((718056, 65337), rel=1e-4)


@pytest.mark.parametrize(("alpha", "power", "expected"), [
    (0.05, 0.9, (680575, 52741)),  # ::test_sample_size_7
    (0.01, 0.8, (730009, 58621)),  # ::test_sample_size_3
])
def test_success_metrics_are_corrected_among_themselves_as_in_confidence(alpha, power, expected):
    # two success metrics: Bonferroni alpha / 2 each; share_bananas_1d two-sided with the treatment's
    # variance under the alternative, bananas_per_user_7d one-sided (increase)
    binary = _confidence_total(sd=_BINARY_SD, mde=_BINARY_MDE, alpha=alpha / 2, power=power, sides=2,
                               sd_treatment=math.sqrt(_P_ALT * (1 - _P_ALT)))
    mean = _confidence_total(sd=_MEAN_SD, mde=_MEAN_MDE, alpha=alpha / 2, power=power, sides=1)
    assert (binary, mean) == pytest.approx(expected, rel=1e-4)


def test_one_sided_power_round_trip():
    n = sample_size_per_arm(sd=1.0, mde=0.1, alpha=0.025, power=0.9, sides=1, sd_treatment=1.2)
    assert achieved_power(sd=1.0, mde=0.1, n_control=n, alpha=0.025, sides=1, sd_treatment=1.2) == pytest.approx(
        0.9, abs=1e-9)
