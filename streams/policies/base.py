"""What every policy shares: the ``Choice`` it returns, sampling, versioning, state.

A policy maps a context (``dict[str, float]``) and the candidate arms of one call to
a probability for each arm, and samples the arm from exactly those probabilities, so
the propensity it logs is the true probability of the choice given the policy's
state. Candidate sets may change from call to call; an arm never seen before is
scored by a fresh, untrained model and nothing is stored for it until it is updated.

``version`` counts the updates applied (one per ``update`` call), is kept in the
serialized state and restored with it, so ``(name, version)`` names the exact
parameters behind a decision.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar

from streams.policies.errors import InvalidArms, InvalidContext, InvalidPolicyState, InvalidReward

#: Version of the serialized state layout written by ``to_state``.
STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen arm, its probability, and the whole distribution it was drawn from."""

    arm: str
    propensity: float
    probabilities: dict[str, float] = field(repr=False)


def check_arms(arms: Sequence[str]) -> list[str]:
    arms = list(arms)
    if not arms:
        raise InvalidArms("arms: at least one candidate arm is required")
    if len(set(arms)) != len(arms):
        raise InvalidArms("arms: candidate arms must be distinct")
    for arm in arms:
        if not isinstance(arm, str) or not arm:
            raise InvalidArms(f"arms: {arm!r} is not a non-empty string")
    return arms


_PLAIN_NUMBERS = frozenset((float, int))


def check_context(context: Mapping[str, float]) -> None:
    """Non-finite features would poison every model they touch: refuse them."""
    values = context.values()
    # The common case in one pass of C (a finite exact sum of plain floats and ints means each
    # is finite); anything else (bools, subclasses, overflow, a bad value) takes the loop below.
    try:
        if set(map(type, values)) <= _PLAIN_NUMBERS and math.isfinite(math.fsum(values)):
            return
    except (OverflowError, TypeError, ValueError):
        pass
    for feature, value in context.items():
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise InvalidContext(f"context.{feature}: {value!r} is not a finite number")


def _plain_updates(
    batch: list[tuple[Mapping[str, float], str, float]],
) -> list[tuple[Mapping[str, float], str, float]] | None:
    """The updates as ``update`` checks them (the reward a float), when every one passes the checks'
    common case (as in ``check_context``: plain str arms, plain float or int values and rewards) in a few
    passes of C over the whole batch; ``None`` when some may not pass: then each is checked in turn, so a
    refusal and what is learned before it are unchanged. A plain sum, not ``check_context``'s exact one,
    says that every value is finite (an inf or a nan makes any float sum inf or nan) at a third less cost;
    a finite batch whose sum overflows only takes the checks in turn."""
    try:
        if set(map(len, batch)) != {3}:
            return None
        contexts, arms, rewards = zip(*batch, strict=True)
        if set(map(type, arms)) != {str} or not all(arms):
            return None
        values = [context.values() for context in contexts]
        if not (set(map(type, chain.from_iterable(values))) <= _PLAIN_NUMBERS
                and math.isfinite(sum(chain.from_iterable(values)))):
            return None
        reward_types = set(map(type, rewards))
        if not (reward_types <= _PLAIN_NUMBERS and math.isfinite(sum(rewards))):
            return None
    except (AttributeError, OverflowError, TypeError, ValueError):
        return None
    if int in reward_types:
        rewards = tuple(map(float, rewards))
    return list(zip(contexts, arms, rewards, strict=True))


def check_reward(reward: float) -> float:
    try:
        value = float(reward)
    except (TypeError, ValueError):
        raise InvalidReward(f"reward: {reward!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidReward(f"reward: {reward!r} is not finite")
    return value


def greedy_probabilities(scores: Mapping[str, float], epsilon: float) -> dict[str, float]:
    """Epsilon-greedy in closed form: ties for the best score share the greedy mass."""
    best = max(scores.values())
    winners = [arm for arm, score in scores.items() if score == best]
    explore = epsilon / len(scores)
    exploit = (1.0 - epsilon) / len(winners)
    probs = dict.fromkeys(scores, explore)
    for arm in winners:
        probs[arm] += exploit
    return probs


def sample(probabilities: Mapping[str, float], u: float) -> str:
    """The arm whose cumulative-probability interval holds ``u`` in [0, 1)."""
    total = 0.0
    last = None
    for arm, p in probabilities.items():
        total += p
        if p > 0.0:
            last = arm
            if u < total:
                return arm
    assert last is not None, "probabilities are all zero"
    return last  # u beyond a total a rounding error below 1


class Policy:
    """Base of the policies; subclasses implement ``probabilities`` and ``_learn``."""

    name: ClassVar[str] = "policy"

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        self.version = 0
        self._rng = random.Random(seed)

    # -- the interface serving and the learner use --------------------------------

    def probabilities(self, context: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
        """The probability of choosing each arm; they sum to 1 and are all > 0."""
        raise NotImplementedError

    def choose(self, context: Mapping[str, float], arms: Sequence[str], *, u: float | None = None) -> Choice:
        """Sample an arm from ``probabilities(context, arms)``.

        The draw comes from the policy's RNG, or is ``u`` in [0, 1) when given (e.g. a
        hash of the decision id, so that a decision can be replayed exactly).
        """
        check_context(context)
        probs = self.probabilities(context, arms)
        if u is None:
            u = self._rng.random()
        elif not 0.0 <= u < 1.0:
            raise ValueError(f"u: {u!r} must be in [0, 1)")
        arm = sample(probs, u)
        return Choice(arm=arm, propensity=probs[arm], probabilities=probs)

    def update(self, context: Mapping[str, float], arm: str, reward: float) -> None:
        """Learn from the reward observed for ``arm`` in ``context``; bumps ``version``."""
        if not isinstance(arm, str) or not arm:
            raise InvalidArms(f"arm: {arm!r} is not a non-empty string")
        check_context(context)
        self._learn(context, arm, check_reward(reward))
        self.version += 1

    def update_many(self, updates: Iterable[tuple[Mapping[str, float], str, float]]) -> None:
        """``update(context, arm, reward)`` for each in order, with the very same result (state
        and version); policies that can share work across updates (the linear ones batch their
        per-arm updates) do. On a bad update, those before it are learned and it raises."""
        batch = list(updates)
        plain = _plain_updates(batch)
        if plain is not None:  # all valid: checked at once
            if plain:
                self._learn_many(plain)
                self.version += len(plain)
            return
        checked: list[tuple[Mapping[str, float], str, float]] = []
        try:
            for context, arm, reward in batch:
                if not isinstance(arm, str) or not arm:
                    raise InvalidArms(f"arm: {arm!r} is not a non-empty string")
                check_context(context)
                checked.append((context, arm, check_reward(reward)))
        finally:
            if checked:
                self._learn_many(checked)
                self.version += len(checked)

    def _learn(self, context: Mapping[str, float], arm: str, reward: float) -> None:
        raise NotImplementedError

    def _learn_many(self, updates: Sequence[tuple[Mapping[str, float], str, float]]) -> None:
        """Checked updates, in order; override when batching changes the cost, never the result."""
        for context, arm, reward in updates:
            self._learn(context, arm, reward)

    # -- reproduction -------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """Constructor parameters other than ``seed`` (JSON-compatible)."""
        return {}

    def clone(self, *, seed: int | None = None) -> Policy:
        """A fresh, untrained policy with the same parameters (and seed unless given)."""
        return type(self)(seed=self.seed if seed is None else seed, **self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.params(), "seed": self.seed}.items())
        return f"{type(self).__name__}({args})"

    # -- safe serialization (plain JSON types, never pickle) ----------------------

    def to_state(self, *, include_rng: bool = False) -> dict[str, Any]:
        """The learned state as JSON-compatible types.

        With ``include_rng`` the random generator's state is kept too, so the reloaded
        policy makes the very same draws; without it (the default, for snapshots that
        several servers load) ``from_state`` reseeds from ``seed``.
        """
        state: dict[str, Any] = {
            "policy": self.name,
            "format": STATE_FORMAT,
            "params": self.params(),
            "seed": self.seed,
            "version": self.version,
            "model": self._model_state(),
        }
        if include_rng:
            state["rng"] = self._rng_state()
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, seed: int | None = None) -> Policy:
        """Rebuild a policy from ``to_state`` output; ``seed`` overrides the stored one."""
        if not isinstance(state, Mapping):
            raise InvalidPolicyState(f"state: expected an object, got {type(state).__name__}")
        if state.get("policy") != cls.name:
            raise InvalidPolicyState(f"policy: {state.get('policy')!r} is not {cls.name!r}")
        if state.get("format") != STATE_FORMAT:
            raise InvalidPolicyState(f"format: {state.get('format')!r} is not {STATE_FORMAT}")
        try:
            policy = cls(seed=state["seed"] if seed is None else seed, **state["params"])
            policy.version = int(state["version"])
            policy._load_model(state["model"])
            if "rng" in state and seed is None:
                policy._load_rng(state["rng"])
        except InvalidPolicyState:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidPolicyState(f"{cls.name}: malformed state ({type(exc).__name__}: {exc})") from exc
        return policy

    def _model_state(self) -> dict[str, Any]:
        return {}

    def _load_model(self, model: Mapping[str, Any]) -> None:
        return None

    def _rng_state(self) -> Any:
        version, internal, gauss = self._rng.getstate()
        return [version, list(internal), gauss]

    def _load_rng(self, rng: Any) -> None:
        version, internal, gauss = rng
        self._rng.setstate((version, tuple(internal), gauss))
