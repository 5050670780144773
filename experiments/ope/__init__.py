"""Off-policy evaluation: a candidate policy's value on the logged decisions, before it serves anyone.

``from_decisions`` turns logged ``Decision`` records and their rewards into ``LoggedDecision``
rows; ``evaluate`` gives the IPS, SNIPS and doubly robust estimates (``ips``, ``snips``,
``doubly_robust``), each an ``Estimate`` with an interval. The estimators (NumPy, SciPy) are
imported on first use; the errors are not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from experiments.ope.errors import InvalidLog, InvalidTarget, OPEError

if TYPE_CHECKING:
    from experiments.ope.estimators import (
        Estimate,
        LoggedDecision,
        TargetPolicy,
        doubly_robust,
        evaluate,
        from_decisions,
        ips,
        reward_model_predictions,
        snips,
    )

__all__ = [
    "Estimate",
    "InvalidLog",
    "InvalidTarget",
    "LoggedDecision",
    "OPEError",
    "TargetPolicy",
    "doubly_robust",
    "evaluate",
    "from_decisions",
    "ips",
    "reward_model_predictions",
    "snips",
]

#: Exports imported on first use, and their modules.
_LAZY = dict.fromkeys(
    ("Estimate", "LoggedDecision", "TargetPolicy", "doubly_robust", "evaluate", "from_decisions", "ips",
     "reward_model_predictions", "snips"),
    "experiments.ope.estimators",
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
