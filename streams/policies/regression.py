"""Epsilon-greedy and softmax over one River regressor per arm.

Each arm has ``preprocessing.StandardScaler() | linear_model.LinearRegression`` trained
by plain SGD on squared loss to predict the arm's reward from the context. Rewards are
taken as they come: keep them on a modest scale (minutes rather than milliseconds, or
1 per play) so that SGD is stable and the softmax ``temperature`` means something.

The state is extracted to plain numbers (the scaler's counts, means and variances, the
regression's weights and intercept, the optimizer's iteration count), so a snapshot is
JSON and never a pickle. Only a constant learning rate is supported for that reason.

>>> policy = EpsilonGreedyPolicy(epsilon=0.2, seed=1)
>>> for _ in range(20):
...     policy.update({"x": 1.0}, "a", 1.0)
...     policy.update({"x": 1.0}, "b", 0.0)
>>> policy.probabilities({"x": 1.0}, ["a", "b"])
{'a': 0.9, 'b': 0.1}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from river import compose, linear_model, optim, preprocessing

from streams.policies.base import Policy, check_arms, greedy_probabilities
from streams.policies.errors import InvalidPolicyState


def _floats(mapping: Any, where: str) -> dict[str, float]:
    if not isinstance(mapping, dict):
        raise InvalidPolicyState(f"{where}: expected an object")
    return {str(k): float(v) for k, v in mapping.items()}


class _PerArmRegressorPolicy(Policy):
    """Shared machinery: one lazily created River pipeline per arm."""

    def __init__(
        self,
        *,
        lr: float = 0.01,
        intercept_lr: float = 0.01,
        l2: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if not (lr > 0 and intercept_lr >= 0 and l2 >= 0):
            raise ValueError("lr must be > 0, intercept_lr and l2 >= 0")
        self.lr = float(lr)
        self.intercept_lr = float(intercept_lr)
        self.l2 = float(l2)
        self._models: dict[str, compose.Pipeline] = {}

    def _new_model(self) -> compose.Pipeline:
        return preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(self.lr), intercept_lr=self.intercept_lr, l2=self.l2
        )

    def params(self) -> dict[str, Any]:
        return {"lr": self.lr, "intercept_lr": self.intercept_lr, "l2": self.l2}

    def predict(self, context: Mapping[str, float], arm: str) -> float:
        """The predicted reward of ``arm`` in ``context`` (0 for an arm never updated)."""
        model = self._models.get(arm)
        if model is None:
            return 0.0
        # The scaler's defaultdicts would grow on unseen features: transform only known ones.
        scaler, regressor = model.steps.values()
        means, vars_ = scaler.means, scaler.vars
        weights = regressor._weights
        total = regressor.intercept
        for feature, value in context.items():
            if feature in means:
                var = vars_[feature]
                scaled = (value - means[feature]) / var**0.5 if var else 0.0  # as River does
                total += weights.get(feature, 0.0) * scaled
        return float(total)

    def scores(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        return {arm: self.predict(context, arm) for arm in arms}

    def _learn(self, context: Mapping[str, float], arm: str, reward: float) -> None:
        model = self._models.get(arm)
        if model is None:
            model = self._models[arm] = self._new_model()
        model.learn_one(dict(context), reward)

    def _model_state(self) -> dict[str, Any]:
        arms = {}
        for arm, model in self._models.items():
            scaler, regressor = model.steps.values()
            arms[arm] = {
                "counts": dict(scaler.counts),
                "means": dict(scaler.means),
                "vars": dict(scaler.vars),
                "weights": {k: float(v) for k, v in regressor._weights.to_dict().items()},
                "intercept": float(regressor.intercept),
                "n_iterations": int(regressor.optimizer.n_iterations),
            }
        return {"arms": arms}

    def _load_model(self, model: Mapping[str, Any]) -> None:
        arms = model["arms"]
        if not isinstance(arms, dict):
            raise InvalidPolicyState("model.arms: expected an object")
        for arm, data in arms.items():
            pipeline = self._new_model()
            scaler, regressor = pipeline.steps.values()
            scaler.counts.update({k: int(v) for k, v in _floats(data["counts"], "counts").items()})
            scaler.means.update(_floats(data["means"], "means"))
            scaler.vars.update(_floats(data["vars"], "vars"))
            for feature, weight in _floats(data["weights"], "weights").items():
                regressor._weights[feature] = weight
            regressor.intercept = float(data["intercept"])
            regressor.optimizer.n_iterations = int(data["n_iterations"])
            self._models[str(arm)] = pipeline


class EpsilonGreedyPolicy(_PerArmRegressorPolicy):
    """The arm with the highest predicted reward with probability 1 - epsilon (ties share
    it), otherwise a uniformly random arm. Propensities are exact."""

    name = "epsilon_greedy"

    def __init__(self, *, epsilon: float = 0.1, seed: int | None = None, **regressor: float) -> None:
        super().__init__(seed=seed, **regressor)
        if not 0.0 < epsilon <= 1.0:
            raise ValueError(f"epsilon: {epsilon!r} must be in (0, 1]")
        self.epsilon = float(epsilon)

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, **super().params()}

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        arms = check_arms(arms)
        return greedy_probabilities(self.scores(context, arms), self.epsilon)


class SoftmaxPolicy(_PerArmRegressorPolicy):
    """Boltzmann exploration: ``p(a) ∝ exp(score(a) / temperature)``, mixed with a uniform
    ``epsilon`` so no propensity underflows to zero. Propensities are exact."""

    name = "softmax"

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        epsilon: float = 0.01,
        seed: int | None = None,
        **regressor: float,
    ) -> None:
        super().__init__(seed=seed, **regressor)
        if not temperature > 0:
            raise ValueError(f"temperature: {temperature!r} must be > 0")
        if not 0.0 < epsilon <= 1.0:
            raise ValueError(f"epsilon: {epsilon!r} must be in (0, 1]")
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "epsilon": self.epsilon, **super().params()}

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        arms = check_arms(arms)
        scores = self.scores(context, arms)
        top = max(scores.values())
        exps = {arm: math.exp((s - top) / self.temperature) for arm, s in scores.items()}
        total = sum(exps.values())
        keep = 1.0 - self.epsilon
        floor = self.epsilon / len(arms)
        return {arm: keep * e / total + floor for arm, e in exps.items()}
