"""The long-term-aware LinUCB: its reward is LinUCB's plus the surrogate's value of a discovery."""

from __future__ import annotations

import pytest

from streams.policies import LinUCBPolicy, LongTermLinUCBPolicy, make_policy, policy_from_state

NEW = {"affinity_jazz_7d": 0.0, "affinity_rock_7d": 1.0}


def test_a_play_of_a_new_genre_earns_the_discovery_bonus_and_nothing_else_does() -> None:
    policy = LongTermLinUCBPolicy(long_term_weight=20.0, discovery_value=0.05, seed=0)
    assert policy.long_term_reward(NEW, "jazz", 1.0) == pytest.approx(2.0)
    assert policy.long_term_reward(NEW, "jazz", 0.0) == 0.0  # skipped: nothing discovered
    assert policy.long_term_reward(NEW, "rock", 1.0) == 1.0  # the favourite: nothing new
    assert policy.long_term_reward({}, "pop", 3.0) == pytest.approx(4.0)  # no affinity logged: never played


def novel(context: dict[str, float], arm: str) -> dict[str, float]:
    return {**context, "novel_arm": float(context.get(f"affinity_{arm}_7d", 0.0) <= 0.0)}


def test_it_is_linucb_on_the_shaped_rewards_with_each_arms_novelty_as_a_feature() -> None:
    shaped = LongTermLinUCBPolicy(long_term_weight=20.0, discovery_value=0.05, alpha=0.5, seed=3)
    plain = LinUCBPolicy(alpha=0.5, seed=3)
    updates = [(NEW, "jazz", 1.0), (NEW, "rock", 1.0), (NEW, "jazz", 0.0), ({"affinity_jazz_7d": 0.5}, "jazz", 1.0)]
    shaped.update_many(updates)
    plain.update_many([(novel(c, a), a, shaped.long_term_reward(c, a, r)) for c, a, r in updates])
    assert shaped.version == plain.version == 4
    for context in (NEW, {"affinity_jazz_7d": 0.5, "affinity_rock_7d": 0.5}, {}):
        for arm in ("jazz", "rock"):
            mine = shaped.mean_and_width(novel(context, arm), [arm])
            theirs = plain.mean_and_width(novel(context, arm), [arm])
            assert mine[0].tolist() == theirs[0].tolist() and mine[1].tolist() == theirs[1].tolist()
    # jazz is new and rock is not: each is scored on its own novelty
    ucb = {arm: float(m[0] + 0.5 * w[0]) for arm in ("jazz", "rock")
           for m, w in [plain.mean_and_width(novel(NEW, arm), [arm])]}
    best = max(ucb, key=ucb.__getitem__)
    assert shaped.probabilities(NEW, ["jazz", "rock"])[best] == pytest.approx(0.975)


def test_a_discovery_that_is_played_raises_the_new_arms_score_more_than_a_plain_play() -> None:
    shaped, plain = LongTermLinUCBPolicy(long_term_weight=20.0, discovery_value=0.05, seed=1), LinUCBPolicy(seed=1)
    for policy in (shaped, plain):
        policy.update_many([(NEW, "jazz", 1.0)] * 20 + [(NEW, "rock", 1.0)] * 20)
    assert shaped.probabilities(NEW, ["jazz", "rock"])["jazz"] == pytest.approx(0.975)
    assert plain.probabilities(NEW, ["jazz", "rock"])["jazz"] == pytest.approx(0.5)  # a tie: shared


def test_its_parameters_survive_the_state_and_the_registry() -> None:
    policy = make_policy("linucb_long_term", seed=2, long_term_weight=5.0, discovery_value=0.1, alpha=0.5)
    policy.update(NEW, "jazz", 1.0)
    back = policy_from_state(policy.to_state())
    assert isinstance(back, LongTermLinUCBPolicy)
    assert (back.long_term_weight, back.discovery_value, back.alpha) == (5.0, 0.1, 0.5)
    assert back.probabilities(NEW, ["jazz", "rock"]) == policy.probabilities(NEW, ["jazz", "rock"])


@pytest.mark.parametrize(("field", "value"), [("long_term_weight", float("nan")), ("discovery_value", float("inf")),
                                              ("novel_affinity", 1.0)])
def test_bad_parameters_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LongTermLinUCBPolicy(**{field: value})
