"""The surrogate of the long-term outcome: learned from past experiments, checked on held-out ones.

``short_term_signals`` and ``retention`` read a unit's events; ``OutcomeJoin`` turns exposures
and events, arriving in any order and weeks apart, into ``SurrogateRow`` rows within an
attribution window (``RollingOutcomeJoin`` the same with state bounded by event time, for a process
that follows the topics); ``fit_surrogate`` fits the ``Surrogate`` (a ridge of the long-term outcome
on the signals) and ``RefitSchedule`` refits it on an event-time schedule; ``validate`` compares,
per held-out past experiment, the effect predicted through the surrogate with the effect
measured on the outcome, both with intervals. NumPy and SciPy are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.surrogate.errors import InvalidSurrogateData, InvalidSurrogateState, SurrogateError
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.surrogate.join import (
        DEFAULT_ATTRIBUTION_WINDOW_MS,
        OutcomeJoin,
        RefitSchedule,
        RollingOutcomeJoin,
        Rows,
    )
    from experiments.surrogate.model import Surrogate, SurrogateRow, fit_surrogate
    from experiments.surrogate.signals import SIGNALS, retention, short_term_signals
    from experiments.surrogate.validity import EffectInterval, Validity, ValidityRow, difference, validate

__all__ = [
    "DEFAULT_ATTRIBUTION_WINDOW_MS",
    "SIGNALS",
    "EffectInterval",
    "InvalidSurrogateData",
    "InvalidSurrogateState",
    "OutcomeJoin",
    "RefitSchedule",
    "RollingOutcomeJoin",
    "Rows",
    "Surrogate",
    "SurrogateError",
    "SurrogateRow",
    "Validity",
    "ValidityRow",
    "difference",
    "fit_surrogate",
    "retention",
    "short_term_signals",
    "validate",
]

_LAZY = {
    **dict.fromkeys(
        ("DEFAULT_ATTRIBUTION_WINDOW_MS", "OutcomeJoin", "RefitSchedule", "RollingOutcomeJoin", "Rows"),
        "experiments.surrogate.join",
    ),
    **dict.fromkeys(("Surrogate", "SurrogateRow", "fit_surrogate"), "experiments.surrogate.model"),
    **dict.fromkeys(("SIGNALS", "retention", "short_term_signals"), "experiments.surrogate.signals"),
    **dict.fromkeys(("EffectInterval", "Validity", "ValidityRow", "difference", "validate"),
                    "experiments.surrogate.validity"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
