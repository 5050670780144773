"""The surrogate's fit: closed form, order-free, checked inputs, JSON state."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.surrogate import (
    SIGNALS,
    InvalidSurrogateData,
    InvalidSurrogateState,
    Surrogate,
    SurrogateRow,
    fit_surrogate,
)


def linear_rows(n: int, seed: int, noise: float = 0.0) -> list[SurrogateRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        signals = {s: float(rng.randrange(0, 6)) + rng.random() for s in SIGNALS}
        outcome = 0.1 + 0.05 * signals["genres_discovered"] - 0.02 * signals["skips"] + noise * rng.gauss(0, 1)
        rows.append(SurrogateRow(f"e{i % 3}", "control" if i % 2 else "treatment", f"u{i}", signals, outcome))
    return rows


def test_it_recovers_a_linear_relation_and_equals_ridge_in_closed_form() -> None:
    rows = linear_rows(300, seed=1)
    model = fit_surrogate(rows, l2=1e-9)
    assert model.coefficients["genres_discovered"] == pytest.approx(0.05, abs=1e-9)
    assert model.coefficients["skips"] == pytest.approx(-0.02, abs=1e-9)
    assert model.intercept == pytest.approx(0.1, abs=1e-8)
    noisy = linear_rows(200, seed=2, noise=0.3)
    fitted = fit_surrogate(noisy, l2=2.0)
    x = np.array([[r.signals[s] for s in SIGNALS] for r in noisy])
    y = np.array([r.outcome for r in noisy])
    xc, yc = x - x.mean(axis=0), y - y.mean()
    beta = np.linalg.solve(xc.T @ xc + 2.0 * np.eye(len(SIGNALS)), xc.T @ yc)
    assert [fitted.coefficients[s] for s in SIGNALS] == pytest.approx(beta.tolist(), rel=1e-9)
    assert fitted.n == 200 and fitted.experiments == ("e0", "e1", "e2")


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_order_of_the_rows_gives_the_same_model(rng: random.Random) -> None:
    rows = linear_rows(60, seed=5, noise=0.2)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert fit_surrogate(shuffled) == fit_surrogate(rows)


def test_bad_rows_are_refused_naming_the_field() -> None:
    rows = linear_rows(20, seed=3)
    with pytest.raises(InvalidSurrogateData, match="cannot fit"):
        fit_surrogate(rows[:5])
    broken = [*rows, SurrogateRow("e", "v", "u", {"plays": 1.0}, 0.0)]
    with pytest.raises(InvalidSurrogateData, match=r"rows\[\d+\]\.signals\.genres_discovered"):
        fit_surrogate(broken)
    nan = [*rows, SurrogateRow("e", "v", "u", rows[0].signals, math.nan)]
    with pytest.raises(InvalidSurrogateData, match=r"outcome"):
        fit_surrogate(nan)
    with pytest.raises(InvalidSurrogateData, match="signals.skips"):
        fit_surrogate(rows).predict({"genres_discovered": 1.0, "plays": 1.0, "listening_hours": 0.0})


def test_the_state_round_trips_and_a_bad_one_names_the_problem() -> None:
    model = fit_surrogate(linear_rows(50, seed=4, noise=0.1), fitted_at=123)
    assert Surrogate.from_state(model.to_state()) == model
    with pytest.raises(InvalidSurrogateState, match="format"):
        Surrogate.from_state({"format": 99})
    state = model.to_state()
    del state["coefficients"]["plays"]
    with pytest.raises(InvalidSurrogateState, match="malformed"):
        Surrogate.from_state(state)
