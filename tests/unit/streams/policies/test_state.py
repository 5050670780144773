"""Policies survive a JSON round trip, clone untrained, and reject bad states."""

from __future__ import annotations

import json
import random

import pytest

from streams.policies import (
    POLICIES,
    EpsilonGreedyPolicy,
    InvalidPolicyState,
    UnknownPolicy,
    make_policy,
    policy_from_state,
)

ARMS = ["jazz", "rock", "pop", "folk"]


def contexts(seed: int, n: int, features: int = 4):
    rng = random.Random(seed)
    return [{f"f{j}": rng.gauss(0, 1) for j in range(rng.randint(1, features))} for _ in range(n)]


def train(policy, seed: int, n: int = 200) -> None:
    """Arms and features appear over time, so models grow after they are created."""
    rng = random.Random(seed)
    for i, context in enumerate(contexts(seed, n)):
        arm = rng.choice(ARMS[: 2 + i * 3 // n])
        policy.update(context, arm, rng.random() + context.get("f0", 0.0))


def reload(policy, **kwargs):
    return policy_from_state(json.loads(json.dumps(policy.to_state(**kwargs))))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_round_trip_gives_the_same_probabilities_choices_and_future(name):
    policy = make_policy(name, seed=11)
    train(policy, seed=1)
    copy = reload(policy, include_rng=True)
    assert type(copy) is type(policy) and repr(copy) == repr(policy)
    assert copy.version == policy.version == 200
    probe = contexts(2, 20, features=6)  # includes features never trained on
    for context in probe:
        assert copy.probabilities(context, ARMS) == policy.probabilities(context, ARMS)
        assert copy.choose(context, [*ARMS, "new"]) == policy.choose(context, [*ARMS, "new"])
    train(policy, seed=3, n=50)  # the state is complete: learning goes on identically
    train(copy, seed=3, n=50)
    assert copy.to_state(include_rng=True) == policy.to_state(include_rng=True)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_clone_is_untrained_with_the_same_parameters(name):
    policy = make_policy(name, seed=5)
    train(policy, seed=1, n=30)
    clone = policy.clone()
    assert repr(clone) == repr(policy) and clone.version == 0
    assert clone.to_state() == make_policy(name, seed=5, **policy.params()).to_state()
    assert clone.clone(seed=6).seed == 6


def test_snapshot_without_rng_is_reseeded_and_seed_can_be_overridden():
    policy = make_policy("softmax", seed=1)
    train(policy, seed=1, n=50)
    state = policy.to_state()
    assert "rng" not in state
    a, b = policy_from_state(state), policy_from_state(state)
    draws = [a.choose({"f0": 0.1}, ARMS).arm for _ in range(30)]
    assert draws == [b.choose({"f0": 0.1}, ARMS).arm for _ in range(30)]
    assert policy_from_state(state, seed=2).seed == 2


def test_river_state_is_plain_numbers_and_prediction_matches_river():
    policy = EpsilonGreedyPolicy(seed=0)
    train(policy, seed=4)
    arm_state = policy.to_state()["model"]["arms"]["jazz"]
    assert set(arm_state) == {"counts", "means", "vars", "weights", "intercept", "n_iterations"}
    for context in contexts(9, 10):
        river_prediction = policy._models["jazz"].predict_one(dict(context))
        assert policy.predict(context, "jazz") == pytest.approx(river_prediction, rel=1e-12, abs=1e-12)


def test_bad_states_and_names_are_rejected():
    state = make_policy("linucb", seed=0).to_state()
    with pytest.raises(InvalidPolicyState, match="format"):
        policy_from_state({**state, "format": 2})
    with pytest.raises(InvalidPolicyState, match="not 'softmax'"):
        POLICIES["softmax"].from_state(state)
    with pytest.raises(InvalidPolicyState, match="malformed"):
        policy_from_state({**state, "model": {"features": ["a"], "arms": {"x": {"b": [1.0, 2.0]}}}})
    with pytest.raises(UnknownPolicy, match="'nope' is not one of"):
        make_policy("nope", seed=0)
    with pytest.raises(UnknownPolicy):
        policy_from_state({"policy": None})
    with pytest.raises(ValueError, match="epsilon"):
        make_policy("epsilon_greedy", seed=0, epsilon=0.0)
    with pytest.raises(ValueError, match="unexpected keyword"):
        make_policy("uniform", seed=0, temperature=1.0)


def test_everything_exported_is_importable():
    import streams.policies as package

    assert all(getattr(package, name, None) is not None for name in package.__all__)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_10_arm_20_feature_snapshot_fits_in_one_model_record(name):
    from streams.events import ModelSnapshot, decode, encode

    policy = make_policy(name, seed=0)
    rng = random.Random(0)
    arms = [f"genre{k}" for k in range(10)]
    for i in range(500):
        policy.update({f"f{j}": rng.gauss(0, 1) for j in range(20)}, arms[i % 10], rng.random())
    snapshot = ModelSnapshot(
        snapshot_id="s1", policy=name, version=policy.version, ts=1_767_225_600_000,
        updates=policy.version, state=policy.to_state(),
    )
    restored = policy_from_state(decode(encode(snapshot), ModelSnapshot).state)
    context = {f"f{j}": 0.5 for j in range(20)}
    assert restored.probabilities(context, arms) == policy.probabilities(context, arms)


def test_corrupt_packed_matrix_is_rejected():
    policy = make_policy("linucb", seed=0)
    policy.update({"x": 1.0}, "a", 1.0)
    state = policy.to_state()
    state["model"]["arms"]["a"]["a_inv_upper_f64"] = "not base64!"
    with pytest.raises(InvalidPolicyState, match="malformed"):
        policy_from_state(state)
    state["model"]["arms"]["a"]["a_inv_upper_f64"] = "AAAA"
    with pytest.raises(InvalidPolicyState, match="wrong length"):
        policy_from_state(state)


@pytest.mark.parametrize("name", ["linucb", "thompson"])
def test_linear_means_and_widths_match_each_arm_computed_alone(name):
    """The stacked, padded arms give what each arm's own ridge statistics give, also for
    arms last updated before some features appeared, after further updates, and for unseen arms."""
    import numpy as np

    policy = make_policy(name, seed=3)

    def per_arm(context, arms):
        x, unknown = policy._vector(context)
        means, variances = [], []
        for arm in arms:
            stats = policy._arms.get(arm)
            if stats is None:
                means.append(0.0)
                variances.append((x @ x + unknown) / policy.l2)
                continue
            m = stats.b.shape[0]
            means.append(stats.theta @ x[:m])
            variances.append(x[:m] @ stats.a_inv @ x[:m] + (x[m:] @ x[m:] + unknown) / policy.l2)
        return np.array(means), np.sqrt(np.array(variances))

    def check(seed):
        for context in contexts(seed, 15, features=6):
            context = {**context, "late": 0.5}
            arms = [*ARMS[::-1], "new"]
            means, widths = policy.mean_and_width(context, arms)
            expected_means, expected_widths = per_arm(context, arms)
            np.testing.assert_allclose(means, expected_means, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(widths, expected_widths, rtol=1e-12, atol=1e-12)

    for round_ in range(3):
        train(policy, seed=round_, n=60)
        check(10 + round_)
    policy.update({"f0": 1.0, "late": -1.0}, "jazz", 1.0)  # a feature only jazz has seen
    shapes = {arm: stats.b.shape[0] for arm, stats in policy._arms.items()}
    assert len(set(shapes.values())) > 1, shapes  # the other arms lag: their padding is exercised
    check(20)
