"""Calibration: the off-policy prediction made before a policy served, beside the A/B test's result.

When an experiment whose spec carries the evaluation gate's record (``spec.evaluation``) is
decided, each gated variant gets one row per metric the gate's rewards speak for:

- the ``short_term`` reward (plays credited per decision) for the metrics counting plays;
- the ``long_term`` reward (the surrogate's value per decision) for the retention metrics
  (measure ``active``).

``predicted`` is the relative change the DR estimate predicted for the reward per decision,
``candidate / control − 1``, with the candidate's interval over the control's point estimate
(the control's own uncertainty is left out: it is the smaller, being closer to the logging
policy); ``realized`` is the report's relative effect with its interval. They measure the
same direction of change on related, not identical, quantities (per decision against per
user): the history across experiments (``tandem report --calibration``) shows how far
they go together, which is what an owner needs to know before trusting the next gate.

>>> calibration_rows(None, None)
()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from experiments.spec import ExperimentSpec, Metric, RewardEvaluation


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    experiment: str
    variant: str
    metric: str
    reward: str
    predicted: float
    predicted_low: float
    predicted_high: float
    realized: float | None
    realized_low: float | None
    realized_high: float | None

    @property
    def covered(self) -> bool | None:
        """Whether the realized effect lies in the predicted interval (None without a realized effect)."""
        if self.realized is None:
            return None
        return self.predicted_low <= self.realized <= self.predicted_high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "covered": self.covered}


def reward_of(metric: Metric) -> str | None:
    """The gate's reward that speaks for ``metric``, if any."""
    measure = metric.measure
    if measure is None:
        return None
    if measure.agg == "count" and measure.types is not None and tuple(measure.types) == ("play",):
        return "short_term"
    if measure.agg == "active":
        return "long_term"
    return None


def _predicted(reward: RewardEvaluation) -> tuple[float, float, float] | None:
    mine = next((e for e in reward.candidate if e.method == "dr"), None)
    theirs = next((e for e in reward.baseline if e.method == "dr"), None)
    if mine is None or theirs is None or theirs.value == 0:
        return None
    scale = abs(theirs.value)
    return ((mine.value - theirs.value) / scale, (mine.ci_low - theirs.value) / scale,
            (mine.ci_high - theirs.value) / scale)


def _realized(statistics: Mapping[str, Any], metric: str, variant: str) -> tuple[float | None, ...]:
    for result in statistics.get("metrics", ()):
        if result.get("name") != metric:
            continue
        for comparison in result.get("comparisons", ()):
            if comparison.get("variant") == variant:
                relative = comparison.get("relative") or {}
                return relative.get("estimate"), relative.get("ci_low"), relative.get("ci_high")
    return None, None, None


def calibration_rows(spec: ExperimentSpec | None, statistics: Mapping[str, Any] | None) -> tuple[CalibrationRow, ...]:
    """Predicted against realized per gated variant and metric (module docstring); () without a gate record."""
    if spec is None or spec.evaluation is None or spec.evaluation.gate == "skipped":
        return ()
    rows = []
    for variant, evaluation in sorted(spec.evaluation.variants.items()):
        rewards = {r.reward: r for r in evaluation.rewards}
        for metric in spec.metrics:
            reward = reward_of(metric)
            if reward is None or reward not in rewards:
                continue
            predicted = _predicted(rewards[reward])
            if predicted is None:
                continue
            realized = _realized(statistics or {}, metric.name, variant)
            rows.append(CalibrationRow(spec.id, variant, metric.name, reward, *predicted, *realized))
    return tuple(rows)
