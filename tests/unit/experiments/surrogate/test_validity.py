"""Held-out validity: where surrogacy holds the predicted effects agree with the realized ones at the
intervals' rate; where the treatment moves the outcome by a path the signals miss, the check says so."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.surrogate import InvalidSurrogateData, SurrogateRow, difference, validate

SIGNALS = ("genres_discovered", "plays")


def past_experiments(count: int, seed: int, *, direct_effect: float = 0.0, units: int = 400) -> list[SurrogateRow]:
    """``count`` experiments; the treatment shifts the signals by an experiment's own amount and the
    outcome (retention) depends on the signals only, plus ``direct_effect`` that no signal carries."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(count):
        shift_genres, shift_plays = rng.uniform(-1.5, 1.5), rng.uniform(-3.0, 3.0)
        for variant, treated in (("control", 0.0), ("treatment", 1.0)):
            genres = rng.poisson(3.0 + treated * shift_genres + 1.5, units).astype(float)
            plays = rng.poisson(10.0 + treated * shift_plays + 3.0, units).astype(float)
            p = np.clip(0.2 + 0.06 * genres + 0.01 * plays + treated * direct_effect, 0.0, 1.0)
            outcome = (rng.random(units) < p).astype(float)
            rows.extend(SurrogateRow(f"exp{e:02d}", variant, f"u{e}-{variant}-{i}",
                                     {"genres_discovered": g, "plays": n}, o)
                        for i, (g, n, o) in enumerate(zip(genres, plays, outcome, strict=True)))
    return rows


def controls(count: int) -> dict[str, str]:
    return {f"exp{e:02d}": "control" for e in range(count)}


def test_where_surrogacy_holds_the_held_out_effects_agree_at_the_intervals_rate() -> None:
    count = 30
    validity = validate(past_experiments(count, seed=1), controls=controls(count), signals=SIGNALS)
    assert len(validity.rows) == count
    failures = sum(not row.agrees for row in validity.rows)
    # Each comparison disagrees with probability at most ~5 % (the gap's SE ignores the positive
    # covariance of the two effects on the same units: conservative); bound at 6 % for the fit's noise.
    assert failures <= stats.binom.isf(1e-4, count, 0.06)
    realized = [row.realized_effect.estimate for row in validity.rows]
    predicted = [row.surrogate_effect.estimate for row in validity.rows]
    assert np.corrcoef(realized, predicted)[0, 1] > 0.8  # effects spread over ±0.1; noise sd ~0.03
    for row in validity.rows:
        assert row.surrogate_effect.ci_low <= row.surrogate_effect.estimate <= row.surrogate_effect.ci_high
        assert row.units == 800 and row.control == "control" and row.variant == "treatment"


def test_a_treatment_effect_the_signals_miss_is_flagged() -> None:
    count = 20
    validity = validate(past_experiments(count, seed=2, direct_effect=0.15), controls=controls(count),
                        signals=SIGNALS)
    # A 0.15 gap against a gap SE near 0.04: each comparison agrees with probability well under 5 %.
    assert sum(row.agrees for row in validity.rows) <= stats.binom.isf(1e-4, count, 0.05)
    assert validity.agreement < 0.5


def test_welch_interval_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    control, treatment = rng.normal(0, 1, 50), rng.normal(0.3, 2, 80)
    mine = difference(control.tolist(), treatment.tolist(), confidence=0.9)
    theirs = stats.ttest_ind(treatment, control, equal_var=False).confidence_interval(0.9)
    assert (mine.ci_low, mine.ci_high) == pytest.approx((theirs.low, theirs.high), rel=1e-9)


def test_validity_needs_two_experiments_and_their_controls() -> None:
    rows = past_experiments(2, seed=4, units=20)
    with pytest.raises(InvalidSurrogateData, match="at least 2 past experiments"):
        validate([r for r in rows if r.experiment == "exp00"], controls=controls(2), signals=SIGNALS)
    with pytest.raises(InvalidSurrogateData, match=r"controls\.exp01"):
        validate(rows, controls={"exp00": "control"}, signals=SIGNALS)
