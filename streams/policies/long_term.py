"""LinUCB whose reward is the short-term reward plus the surrogate's predicted long-term value.

The surrogate (``experiments.surrogate``) predicts a user's long-term outcome (retention)
from short-term signals; its coefficient on *genres discovered* is the long-term value
of one more genre played in the week. A decision that earned a play (reward > 0) on a
genre the user had not played in the last 7 days (``affinity_<arm>_7d`` in the context at
or below ``novel_affinity``) discovered a genre, so it is credited

    reward + long_term_weight · discovery_value

and any other decision its plain reward. Whether an arm is new to the user is also a feature of
that arm's model (``novel_arm``: 1 or 0, per arm, added to the context), so each arm learns how
often a discovery of it is played apart from how often it is played by those who already listen
to it; without it the linear model smears the bonus over the arm's affinity slope (measured in
docs/long-term.md: it moved the trade-off between plays and retention, not past it).
``discovery_value`` is in the long-term outcome's
unit (e.g. retention probability per genre); ``long_term_weight`` converts that unit into
reward units (how many plays one point of retention is worth): both come from the spec's
``policy_params``. Everything else (choice, exact propensities, state) is LinUCB's, so
serving, the learner and off-policy evaluation treat it like any other policy.

>>> policy = LongTermLinUCBPolicy(long_term_weight=10.0, discovery_value=0.05, seed=1)
>>> policy.long_term_reward({"affinity_jazz_7d": 0.0}, "jazz", 1.0)
1.5
>>> policy.long_term_reward({"affinity_jazz_7d": 0.4}, "jazz", 1.0)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streams.features.config import affinity_name
from streams.policies.base import check_arms, greedy_probabilities
from streams.policies.linear import LinUCBPolicy

#: The per-arm feature saying that the arm's genre is new to the user this week.
NOVEL_ARM = "novel_arm"


class LongTermLinUCBPolicy(LinUCBPolicy):
    """LinUCB learning ``reward + long_term_weight · discovery_value`` on discoveries (module doc)."""

    name = "linucb_long_term"

    def __init__(
        self, *, long_term_weight: float = 0.0, discovery_value: float = 0.0, novel_affinity: float = 0.0,
        alpha: float = 1.0, l2: float = 1.0, epsilon: float = 0.05, seed: int | None = None,
    ) -> None:
        super().__init__(alpha=alpha, l2=l2, epsilon=epsilon, seed=seed)
        for field, value in (("long_term_weight", long_term_weight), ("discovery_value", discovery_value),
                             ("novel_affinity", novel_affinity)):
            if not math.isfinite(value):
                raise ValueError(f"{field}: {value!r} must be finite")
        if not 0.0 <= novel_affinity < 1.0:
            raise ValueError(f"novel_affinity: {novel_affinity!r} must be in [0, 1)")
        self.long_term_weight = float(long_term_weight)
        self.discovery_value = float(discovery_value)
        self.novel_affinity = float(novel_affinity)
        self._bonus = self.long_term_weight * self.discovery_value

    def params(self) -> dict[str, Any]:
        return {"long_term_weight": self.long_term_weight, "discovery_value": self.discovery_value,
                "novel_affinity": self.novel_affinity, **super().params()}

    def novel(self, context: Mapping[str, float], arm: str) -> bool:
        """Whether ``arm``'s genre is new to the user this week (no play of it in the context's 7 days)."""
        return context.get(affinity_name(arm), 0.0) <= self.novel_affinity

    def discovered(self, context: Mapping[str, float], arm: str, reward: float) -> bool:
        """Whether a decision with this reward played a genre new to the user this week."""
        return reward > 0.0 and self.novel(context, arm)

    def long_term_reward(self, context: Mapping[str, float], arm: str, reward: float) -> float:
        return reward + self._bonus if self.discovered(context, arm, reward) else reward

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        arms = check_arms(arms)
        # Each arm is scored on the context with its own ``novel_arm``: both versions, then pick per arm.
        new_mean, new_width = self.mean_and_width({**context, NOVEL_ARM: 1.0}, arms)
        old_mean, old_width = self.mean_and_width({**context, NOVEL_ARM: 0.0}, arms)
        novel = np.array([self.novel(context, arm) for arm in arms])
        ucb = np.where(novel, new_mean + self.alpha * new_width, old_mean + self.alpha * old_width)
        return greedy_probabilities(dict(zip(arms, ucb.tolist(), strict=True)), self.epsilon)

    def _learn_many(self, updates: Sequence[tuple[Mapping[str, float], str, float]]) -> None:
        super()._learn_many([
            ({**context, NOVEL_ARM: float(self.novel(context, arm))}, arm, self.long_term_reward(context, arm, reward))
            for context, arm, reward in updates
        ])
