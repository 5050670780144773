"""Contextual bandit policies that log the probability of every choice they make.

Serving calls ``choose(context, arms)`` and logs the returned ``Choice.propensity``;
the learner calls ``update(context, arm, reward)`` and publishes ``to_state()``;
servers rebuild with ``policy_from_state``. Off-policy evaluation uses
``probabilities(context, arms)``.
"""

from streams.policies.base import Choice, Policy
from streams.policies.baselines import PopularityPolicy, UniformPolicy
from streams.policies.errors import (
    InvalidArms,
    InvalidContext,
    InvalidPolicyState,
    InvalidReward,
    PolicyError,
    UnknownPolicy,
)
from streams.policies.linear import LinUCBPolicy, ThompsonPolicy
from streams.policies.long_term import LongTermLinUCBPolicy
from streams.policies.registry import POLICIES, make_policy, policy_from_state
from streams.policies.regression import EpsilonGreedyPolicy, SoftmaxPolicy

__all__ = [
    "POLICIES",
    "Choice",
    "EpsilonGreedyPolicy",
    "InvalidArms",
    "InvalidContext",
    "InvalidPolicyState",
    "InvalidReward",
    "LinUCBPolicy",
    "LongTermLinUCBPolicy",
    "Policy",
    "PolicyError",
    "PopularityPolicy",
    "SoftmaxPolicy",
    "ThompsonPolicy",
    "UniformPolicy",
    "UnknownPolicy",
    "make_policy",
    "policy_from_state",
]
