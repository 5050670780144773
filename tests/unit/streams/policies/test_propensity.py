"""Logged propensities are a distribution and match the frequencies of the choices made."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from streams.policies import POLICIES, Choice, InvalidArms, InvalidContext, InvalidReward, ThompsonPolicy, make_policy

ARMS = ["jazz", "rock", "pop", "folk", "soul"]
CONTEXT = {"f0": 0.3, "f1": -1.2, "f2": 0.8}


def trained(name: str, seed: int = 0):
    policy = make_policy(name, seed=seed)
    rng = random.Random(99)
    for _ in range(300):
        context = {f"f{j}": rng.gauss(0, 1) for j in range(3)}
        arm = rng.choice(ARMS)
        policy.update(context, arm, ARMS.index(arm) * 0.1 + 0.2 * context["f0"] + rng.gauss(0, 0.1))
    return policy


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_probabilities_are_a_distribution_with_positive_mass(name):
    policy = trained(name)
    for arms in (ARMS, ARMS[:1], ["never-seen", *ARMS[2:]]):
        probs = policy.probabilities(CONTEXT, arms)
        assert list(probs) == arms
        assert math.isclose(sum(probs.values()), 1.0, rel_tol=0, abs_tol=1e-9)
        assert min(probs.values()) > 0
        choice = policy.choose(CONTEXT, arms)
        assert isinstance(choice, Choice) and choice.arm in arms
        assert choice.propensity == probs[choice.arm] and choice.probabilities == probs


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_choice_frequencies_match_the_logged_propensities(name):
    policy = trained(name, seed=1234)
    version = policy.version
    n = 4000
    counts = dict.fromkeys(ARMS, 0)
    for _ in range(n):  # frozen: no updates between choices
        choice = policy.choose(CONTEXT, ARMS)
        counts[choice.arm] += 1
    probs = policy.probabilities(CONTEXT, ARMS)
    assert policy.version == version
    expected = [n * probs[arm] for arm in ARMS]
    assert min(expected) >= 5, "the chi-square approximation needs enough expected counts"
    assert stats.chisquare([counts[arm] for arm in ARMS], expected).pvalue > 0.001, (counts, expected)


def test_choosing_does_not_change_the_state():
    policy = trained("epsilon_greedy")
    before = policy.to_state()
    policy.choose({"brand-new-feature": 1.0, **CONTEXT}, ["brand-new-arm", *ARMS])
    assert policy.to_state() == before


def test_greedy_ties_share_the_greedy_mass():
    policy = make_policy("epsilon_greedy", seed=0, epsilon=0.2)
    assert policy.probabilities(CONTEXT, ["a", "b", "c", "d"]) == pytest.approx(dict.fromkeys("abcd", 0.25))
    policy = make_policy("linucb", seed=0, epsilon=0.3)
    assert policy.probabilities({}, ["a", "b", "c"]) == pytest.approx(dict.fromkeys("abc", 1 / 3))


def test_thompson_win_probabilities_match_monte_carlo():
    policy = ThompsonPolicy(seed=0)
    means = np.array([0.1, 0.3, 0.25, -0.2])
    sds = np.array([0.2, 0.05, 0.3, 1.0])
    draws = np.random.default_rng(0).normal(means, sds, size=(400_000, 4))
    empirical = np.bincount(draws.argmax(axis=1), minlength=4) / draws.shape[0]
    assert policy.win_probabilities(means, sds) == pytest.approx(empirical, abs=0.003)


def test_thompson_two_arm_win_probability_matches_the_closed_form():
    means, sds = np.array([0.0, 1.0]), np.array([1.0, 0.5])
    exact = stats.norm.cdf(-1.0 / math.hypot(1.0, 0.5))  # P(N(0,1) > N(1, 0.25))
    assert ThompsonPolicy(seed=0).win_probabilities(means, sds)[0] == pytest.approx(exact, abs=1e-3)


def test_a_supplied_draw_replays_the_choice_without_touching_the_rng():
    policy = make_policy("popularity", seed=0, epsilon=0.3)
    policy.update({}, "rock", 1.0)  # jazz 0.1, rock 0.8, pop 0.1
    state = policy.to_state(include_rng=True)
    picks = [policy.choose({}, ["jazz", "rock", "pop"], u=u).arm for u in (0.0, 0.099, 0.1, 0.89, 0.9, 0.999)]
    assert picks == ["jazz", "jazz", "rock", "rock", "pop", "pop"]
    assert policy.to_state(include_rng=True) == state
    with pytest.raises(ValueError, match="u:"):
        policy.choose({}, ["jazz"], u=1.0)


@pytest.mark.parametrize("arms", [[], ["a", "a"], ["a", ""]])
def test_bad_candidate_sets_are_rejected(arms):
    with pytest.raises(InvalidArms):
        make_policy("uniform", seed=0).choose({}, arms)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_non_finite_inputs_are_refused_before_they_reach_a_model(name):
    policy = make_policy(name, seed=0)
    with pytest.raises(InvalidContext, match="context.f0"):
        policy.update({"f0": float("nan")}, "a", 1.0)
    with pytest.raises(InvalidContext, match="context.f0"):
        policy.choose({"f0": float("inf")}, ["a"])
    with pytest.raises(InvalidReward, match="reward"):
        policy.update({"f0": 1.0}, "a", float("nan"))
    assert policy.version == 0
