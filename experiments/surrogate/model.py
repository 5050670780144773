"""The surrogate index: a ridge regression of the long-term outcome on short-term signals.

Following the surrogate-index idea (Athey, Chetty, Imbens and Kang, 2019): on past
experiments where both were observed, learn ``E[long-term outcome | short-term signals]``;
in a new experiment, the effect on the long-term outcome is estimated by the effect on
that prediction, available as soon as the signals are (a day instead of weeks). It is
valid when the signals carry every path by which a treatment moves the outcome
(surrogacy) and the relation is the same across experiments (comparability); the
held-out check in ``experiments.surrogate.validity`` tests the second on the archive.

The fit is deterministic in its rows *as a set*: rows are sorted by
``(experiment, variant, unit)`` before fitting, so the arrival order of the outcomes
that built them changes nothing.

>>> rows = [SurrogateRow("e", "control", f"u{i}", {"genres_discovered": float(i % 4)}, 0.2 * (i % 4))
...         for i in range(40)]
>>> model = fit_surrogate(rows, signals=("genres_discovered",), l2=1e-9)
>>> round(model.coefficients["genres_discovered"], 6), round(model.predict({"genres_discovered": 2.0}), 6)
(0.2, 0.4)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.surrogate.errors import InvalidSurrogateData, InvalidSurrogateState
from experiments.surrogate.signals import SIGNALS

#: Version of the layout ``Surrogate.to_state`` writes.
STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SurrogateRow:
    """One unit of one past experiment: its short-term signals and its long-term outcome."""

    experiment: str
    variant: str
    unit: str
    signals: Mapping[str, float] = field(hash=False)
    outcome: float


@dataclass(frozen=True, slots=True)
class Surrogate:
    """``outcome ≈ intercept + Σ coefficients[s] · signals[s]``, fitted on ``n`` rows of ``experiments``."""

    outcome: str
    signals: tuple[str, ...]
    coefficients: Mapping[str, float]
    intercept: float
    l2: float
    n: int
    experiments: tuple[str, ...]
    fitted_at: int | None = None  # the event-time watermark of the outcomes it saw, when refitted on a schedule

    def predict(self, signals: Mapping[str, float]) -> float:
        try:
            return self.intercept + sum(self.coefficients[s] * float(signals[s]) for s in self.signals)
        except KeyError as exc:
            raise InvalidSurrogateData(f"signals.{exc.args[0]}: missing") from None

    def to_state(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "outcome": self.outcome, "signals": list(self.signals),
                "coefficients": dict(self.coefficients), "intercept": self.intercept, "l2": self.l2,
                "n": self.n, "experiments": list(self.experiments), "fitted_at": self.fitted_at}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Surrogate:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise InvalidSurrogateState(f"format: expected a surrogate of format {STATE_FORMAT}")
        try:
            signals = tuple(str(s) for s in state["signals"])
            coefficients = {s: float(state["coefficients"][s]) for s in signals}
            fitted_at = state.get("fitted_at")
            return cls(str(state["outcome"]), signals, coefficients, float(state["intercept"]),
                       float(state["l2"]), int(state["n"]), tuple(str(e) for e in state["experiments"]),
                       None if fitted_at is None else int(fitted_at))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSurrogateState(f"malformed surrogate ({type(exc).__name__}: {exc})") from exc


def _row_key(row: SurrogateRow) -> tuple[str, str, str]:
    return row.experiment, row.variant, row.unit


def design(rows: Sequence[SurrogateRow], signals: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The signal matrix and the outcome vector of ``rows``, checked."""
    x = np.empty((len(rows), len(signals)))
    y = np.empty(len(rows))
    for i, row in enumerate(rows):
        for j, name in enumerate(signals):
            value = row.signals.get(name)
            if value is None or not math.isfinite(value):
                raise InvalidSurrogateData(f"rows[{i}].signals.{name}: {value!r} is missing or not finite")
            x[i, j] = value
        if not math.isfinite(row.outcome):
            raise InvalidSurrogateData(f"rows[{i}].outcome: {row.outcome!r} is not finite")
        y[i] = row.outcome
    return x, y


def fit_surrogate(
    rows: Iterable[SurrogateRow], *, signals: Sequence[str] = SIGNALS, outcome: str = "retention_d7",
    l2: float = 1.0, fitted_at: int | None = None,
) -> Surrogate:
    """Ridge (unpenalized intercept) of the outcome on ``signals``; see the module docstring."""
    if not l2 > 0:
        raise ValueError(f"l2: {l2!r} must be > 0")
    ordered = sorted(rows, key=_row_key)
    if len(ordered) <= len(signals) + 1:
        raise InvalidSurrogateData(f"rows: {len(ordered)} rows cannot fit {len(signals)} signals and an intercept")
    x, y = design(ordered, signals)
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    beta = np.linalg.solve(xc.T @ xc + l2 * np.eye(len(signals)), xc.T @ (y - mean_y))
    return Surrogate(
        outcome=outcome, signals=tuple(signals),
        coefficients={s: float(b) for s, b in zip(signals, beta, strict=True)},
        intercept=float(mean_y - mean_x @ beta), l2=float(l2), n=len(ordered),
        experiments=tuple(sorted({row.experiment for row in ordered})), fitted_at=fitted_at,
    )
