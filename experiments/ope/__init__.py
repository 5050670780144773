"""Off-policy evaluation: a candidate policy's value on the logged decisions, before it serves anyone.

``from_decisions`` turns logged ``Decision`` records and their rewards into ``LoggedDecision``
rows; ``evaluate`` gives the IPS, SNIPS and doubly robust estimates (``ips``, ``snips``,
``doubly_robust``), each an ``Estimate`` with an interval. The estimators (NumPy, SciPy) are
imported on first use; the errors are not. ``judge`` is the evaluation gate's rule
(``GateRule``): a policy the log predicts harmful, or cannot judge, does not serve;
``calibration_rows`` puts its prediction beside the A/B test's result when the experiment is decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.ope.errors import GateRefused, InvalidLog, InvalidTarget, OPEError
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.ope.calibration import CalibrationRow, calibration_rows
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
    from experiments.ope.gate import GateRule, judge

__all__ = [
    "CalibrationRow",
    "Estimate",
    "GateRefused",
    "GateRule",
    "InvalidLog",
    "InvalidTarget",
    "calibration_rows",
    "LoggedDecision",
    "OPEError",
    "TargetPolicy",
    "doubly_robust",
    "evaluate",
    "from_decisions",
    "ips",
    "judge",
    "reward_model_predictions",
    "snips",
]

#: Exports imported on first use, and their modules.
_LAZY = {**dict.fromkeys(("GateRule", "judge"), "experiments.ope.gate"),
         **dict.fromkeys(("CalibrationRow", "calibration_rows"), "experiments.ope.calibration"), **dict.fromkeys(
    ("Estimate", "LoggedDecision", "TargetPolicy", "doubly_robust", "evaluate", "from_decisions", "ips",
     "reward_model_predictions", "snips"),
    "experiments.ope.estimators",
)}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
