"""Policies by name, and policies back from their serialized state.

>>> policy = make_policy("epsilon_greedy", seed=3, epsilon=0.2)
>>> policy
EpsilonGreedyPolicy(epsilon=0.2, lr=0.01, intercept_lr=0.01, l2=0.0, seed=3)
>>> policy_from_state(policy.to_state()).probabilities({"x": 1.0}, ["a", "b"])
{'a': 0.5, 'b': 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.policies.base import Policy
from streams.policies.baselines import PopularityPolicy, UniformPolicy
from streams.policies.errors import InvalidPolicyState, UnknownPolicy
from streams.policies.linear import LinUCBPolicy, ThompsonPolicy
from streams.policies.long_term import LongTermLinUCBPolicy
from streams.policies.regression import EpsilonGreedyPolicy, SoftmaxPolicy

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        UniformPolicy,
        PopularityPolicy,
        EpsilonGreedyPolicy,
        SoftmaxPolicy,
        LinUCBPolicy,
        LongTermLinUCBPolicy,
        ThompsonPolicy,
    )
}


def _policy_class(name: Any) -> type[Policy]:
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise UnknownPolicy(f"policy: {name!r} is not one of {sorted(POLICIES)}") from None


def make_policy(name: str, *, seed: int | None, **params: Any) -> Policy:
    """A fresh policy of the registered ``name``; ``params`` go to its constructor."""
    cls = _policy_class(name)
    try:
        return cls(seed=seed, **params)
    except TypeError as exc:  # an unknown parameter name
        raise ValueError(f"{name}: {exc}") from None


def policy_from_state(state: Mapping[str, Any], *, seed: int | None = None) -> Policy:
    """Rebuild whichever policy ``state`` (from ``Policy.to_state``) describes."""
    if not isinstance(state, Mapping):
        raise InvalidPolicyState(f"state: expected an object, got {type(state).__name__}")
    return _policy_class(state.get("policy")).from_state(state, seed=seed)
