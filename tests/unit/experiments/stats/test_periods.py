"""Period-weighted inference for bandit experiments, against closed forms (the A/A error rate under
moving weights is in tests/unit/experiments/test_allocation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats.periods import PeriodCell, period_srm, period_weighted_effect


def test_period_weighting_matches_the_closed_form_and_the_srm_uses_each_periods_weights():
    cells = {("a", 0): PeriodCell(4, 2.0, 2.0), ("b", 0): PeriodCell(4, 3.0, 3.0),
             ("a", 1): PeriodCell(2, 2.0, 2.0), ("b", 1): PeriodCell(10, 5.0, 5.0)}
    effect = period_weighted_effect(cells, control="a", treatment="b")
    # periods of 8 and 12 users: weights 0.4 and 0.6
    assert effect.control_mean == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert effect.treatment_mean == pytest.approx(0.4 * 0.75 + 0.6 * 0.5)
    var_a = 0.4**2 * (1 / 3) / 4 + 0.6**2 * 0.0 / 2
    var_b = 0.4**2 * 0.25 / 4 + 0.6**2 * (2.5 / 9) / 10
    assert effect.std_error == pytest.approx(np.sqrt(var_a + var_b))
    srm = period_srm({("a", 0): 50, ("b", 0): 50, ("a", 1): 10, ("b", 1): 90},
                     [{"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 0.9}])
    assert srm.statistic == pytest.approx(0.0) and srm.passed and srm.degrees_of_freedom == 2
    assert not period_srm({("a", 0): 50, ("b", 0): 50, ("a", 1): 50, ("b", 1): 50},
                          [{"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 0.9}]).passed
