"""Non-personalized baselines: uniform random and popularity.

>>> policy = PopularityPolicy(epsilon=0.2, seed=7)
>>> policy.update({}, "jazz", 1.0)
>>> policy.probabilities({}, ["jazz", "rock"])
{'jazz': 0.9, 'rock': 0.1}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streams.policies.base import Policy, check_arms, greedy_probabilities
from streams.policies.errors import InvalidPolicyState


def _check_epsilon(epsilon: float) -> float:
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon: {epsilon!r} must be in (0, 1] so every arm keeps a chance")
    return float(epsilon)


class UniformPolicy(Policy):
    """Every candidate arm with the same probability; learns nothing (``version`` still counts)."""

    name = "uniform"

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        arms = check_arms(arms)
        return dict.fromkeys(arms, 1.0 / len(arms))

    def _learn(self, context: Mapping[str, float], arm: str, reward: float) -> None:
        return None


class PopularityPolicy(Policy):
    """The arm with the most total reward (or plays) so far, with epsilon exploration.

    ``by="reward"`` ranks arms by the sum of their rewards, ``by="plays"`` by the
    number of updates with a positive reward. Ties share the greedy probability, so
    with no data the choice is uniform. The context is ignored.
    """

    name = "popularity"

    def __init__(self, *, epsilon: float = 0.05, by: str = "reward", seed: int | None = None) -> None:
        super().__init__(seed=seed)
        if by not in ("reward", "plays"):
            raise ValueError(f"by: {by!r} must be 'reward' or 'plays'")
        self.epsilon = _check_epsilon(epsilon)
        self.by = by
        self._totals: dict[str, float] = {}

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "by": self.by}

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        arms = check_arms(arms)
        totals = self._totals
        return greedy_probabilities({arm: totals.get(arm, 0.0) for arm in arms}, self.epsilon)

    def _learn(self, context: Mapping[str, float], arm: str, reward: float) -> None:
        gain = reward if self.by == "reward" else float(reward > 0)
        self._totals[arm] = self._totals.get(arm, 0.0) + gain

    def _model_state(self) -> dict[str, Any]:
        return {"totals": dict(self._totals)}

    def _load_model(self, model: Mapping[str, Any]) -> None:
        totals = model["totals"]
        if not isinstance(totals, dict):
            raise InvalidPolicyState("model.totals: expected an object")
        self._totals = {str(arm): float(value) for arm, value in totals.items()}
