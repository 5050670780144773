"""``update_many`` is ``update`` one after the other, bit for bit, for every policy and any batching."""

from __future__ import annotations

import json
import math
import random

import pytest

from streams.policies import POLICIES, InvalidContext, make_policy
from streams.policies.base import check_context

ARMS = ["jazz", "rock", "pop", "folk", "metal"]


def updates(seed: int, n: int) -> list[tuple[dict[str, float], str, float]]:
    """Features appear over time and in shuffled orders, so models grow inside a batch."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        names = [f"f{j}" for j in range(1 + min(i // 20, 12))]
        if rng.random() < 0.3:
            rng.shuffle(names)
        context = {name: rng.gauss(0, 1) for name in names[: rng.randint(0, len(names))]}
        out.append((context, rng.choice(ARMS), rng.random() * rng.choice([1.0, 1000.0])))
    return out


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("seed", range(5))
def test_update_many_equals_updates_one_at_a_time(name: str, seed: int) -> None:
    log = updates(seed, 300)
    one_by_one, batched = make_policy(name, seed=1), make_policy(name, seed=1)
    for update in log:
        one_by_one.update(*update)
    rng, start = random.Random(seed), 0
    while start < len(log):
        size = rng.randint(1, 80)
        batched.update_many(log[start:start + size])
        start += size
    assert json.dumps(batched.to_state(include_rng=True)) == json.dumps(one_by_one.to_state(include_rng=True))
    context = log[-1][0]
    assert batched.probabilities(context, ARMS) == one_by_one.probabilities(context, ARMS)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_bad_update_learns_those_before_it_and_names_the_field(name: str) -> None:
    log = updates(3, 10)
    bad = ({"f0": math.nan}, "jazz", 1.0)
    one_by_one, batched = make_policy(name, seed=1), make_policy(name, seed=1)
    for update in log[:4]:
        one_by_one.update(*update)
    with pytest.raises(InvalidContext, match="context.f0"):
        batched.update_many([*log[:4], bad, *log[4:]])
    assert batched.version == 4
    assert batched.to_state() == one_by_one.to_state()


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "1.0", None, 1e308])
def test_check_context_refuses_what_it_always_refused(value: object) -> None:
    context = {"a": 1.0, "b": value, "c": 1e308}
    if value == 1e308:
        check_context(context)  # finite values whose sum overflows are fine
        return
    with pytest.raises(InvalidContext, match="context.b"):
        check_context(context)  # type: ignore[arg-type]


def test_check_context_accepts_ints_bools_and_float_subclasses() -> None:
    class Score(float):
        pass

    check_context({"a": 1, "b": True, "c": Score(0.5), "d": -0.0})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # learning 1e308 overflows, batched or not
@pytest.mark.parametrize("name", ["linucb", "linucb_long_term"])
@pytest.mark.parametrize("values", [[math.inf], [-math.inf], [math.inf, -math.inf], [math.nan], [1e308, 1e308]])
def test_update_many_refuses_or_learns_as_the_updates_would_whatever_the_batch_sums_to(
    name: str, values: list[float],
) -> None:
    """The batch's quick check sums the values: infinities of both signs (a nan sum) and finite values
    whose sum overflows must still be refused, or learned, exactly as one update after the other."""
    log = updates(3, 10)
    batch = [*log[:4], *[({"f0": 0.5, "f1": value}, "jazz", 1.0) for value in values], *log[4:]]

    def outcome(apply: object) -> str | None:
        try:
            apply()  # type: ignore[operator]
        except InvalidContext as exc:
            return str(exc)
        return None

    one_by_one, batched = make_policy(name, seed=1), make_policy(name, seed=1)
    assert outcome(lambda: [one_by_one.update(*update) for update in batch]) == outcome(
        lambda: batched.update_many(batch))
    assert batched.version == one_by_one.version
    assert json.dumps(batched.to_state()) == json.dumps(one_by_one.to_state())
