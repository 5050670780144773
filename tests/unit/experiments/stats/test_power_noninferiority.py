"""Power and sample size against closed forms and simulation; non-inferiority against its formula."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.stats.inference import FixedHorizon
from experiments.stats.noninferiority import beyond_margin, non_inferiority_test
from experiments.stats.power import (
    achieved_power,
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
