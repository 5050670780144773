"""On a contextual environment with known rewards, learning policies beat uniform random."""

from __future__ import annotations

import numpy as np
import pytest

from streams.policies import make_policy

DIM, ARMS, STEPS = 5, ["arm0", "arm1", "arm2", "arm3"], 3000


def run(name: str, *, seed: int = 0, env_seed: int = 42, **params) -> tuple[float, float]:
    """Mean expected reward of the arms chosen, and of the best arms, over the run."""
    rng = np.random.default_rng(env_seed)
    theta = rng.normal(size=(len(ARMS), DIM))  # the best arm depends on the context
    policy = make_policy(name, seed=seed, **params)
    earned = best = 0.0
    for _ in range(STEPS):
        x = rng.normal(size=DIM)
        context = {f"f{j}": float(v) for j, v in enumerate(x)}
        means = 0.5 + 0.2 * theta @ x
        choice = policy.choose(context, ARMS)
        k = ARMS.index(choice.arm)
        policy.update(context, choice.arm, float(means[k] + rng.normal(0.0, 0.1)))
        earned += means[k]
        best += means.max()
    assert policy.version == STEPS
    return earned / STEPS, best / STEPS


@pytest.fixture(scope="module")
def uniform() -> float:
    return run("uniform")[0]


@pytest.mark.parametrize("name", ["epsilon_greedy", "softmax", "linucb", "thompson"])
def test_learning_policies_beat_uniform_by_a_clear_margin(name, uniform):
    earned, best = run(name)
    assert earned > uniform + 0.5 * (best - uniform), (name, earned, uniform, best)


def test_popularity_follows_the_most_rewarded_arm():
    policy = make_policy("popularity", seed=0, epsilon=0.1)
    for _ in range(5):
        policy.update({}, "rock", 2.0)
        policy.update({}, "jazz", 1.0)
    probs = policy.probabilities({}, ["jazz", "rock", "pop"])
    assert probs["rock"] == pytest.approx(0.9 + 0.1 / 3) and probs["pop"] == pytest.approx(0.1 / 3)
    by_plays = make_policy("popularity", seed=0, by="plays")
    by_plays.update({}, "jazz", 0.5)
    by_plays.update({}, "jazz", 0.5)
    by_plays.update({}, "rock", 100.0)
    assert max(by_plays.probabilities({}, ["jazz", "rock"]).items(), key=lambda kv: kv[1])[0] == "jazz"
