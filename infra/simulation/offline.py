"""The simulator in one process: the user model against real policy objects, no Kafka, no HTTP.

It mirrors what the running stack does, minus the transport: users are assigned with
``experiments.assignment.assign`` (holdout users get the default policy, as serving does);
each variant's policy is ``make_policy(variant.policy, seed=seed, **variant.policy_params)``
(variants naming the same policy share one object, as serving shares one per name); the
context is the user's features (``UserFeatureState.features()``, as the features worker
writes them to Feast); the reward of a decision is the ms played of the plays of its genre
within ``reward_window_ms``, each play credited to the most recent matching decision (the
learner's default join), applied ``update_lag_ms`` after its window closes.

For tuning the model and for tests: a 2,000-user run takes a few seconds.
"""

from __future__ import annotations

import argparse
import heapq
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from experiments.assignment import assign
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec
from infra.simulation.model import DAY_MS, HOUR_MS, ORIGIN_MS, ModelParams, User, make_users, session
from infra.simulation.truth import compute_truth
from streams.events import EventType, ListeningEvent
from streams.features import FeatureConfig, UserFeatureState
from streams.policies import Policy, make_policy

#: The demo experiment shipped with the repository.

REWARD_WINDOW_MS = 30 * 60_000


def load_demo_spec() -> ExperimentSpec:
    return load_spec(DEMO_SPEC_PATH)


def make_policies(spec: ExperimentSpec, *, seed: int, default_policy: str = "popularity") -> dict[str, Policy]:
    """One policy object per policy name, built with its variant's ``policy_params``."""
    policies: dict[str, Policy] = {}
    for variant in spec.variants:
        if variant.policy not in policies:
            policies[variant.policy] = make_policy(variant.policy, seed=seed, **variant.policy_params)
    if default_policy not in policies:
        policies[default_policy] = make_policy(default_policy, seed=seed)
    return policies


class LearningCurve:
    """Per simulated day and variant: recommendations, plays and reward (ms played of the played arm)."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])

    def add(self, variant: str, ts: int, played: bool, reward_ms: float) -> None:
        row = self._days[(variant, (ts - ORIGIN_MS) // DAY_MS)]
        row[0] += 1
        row[1] += played
        row[2] += reward_ms

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"variant": v, "day": d, "recommendations": int(n), "play_rate": plays / n, "mean_reward_ms": ms / n}
            for (v, d), (n, plays, ms) in sorted(self._days.items())
        ]


@dataclass
class OfflineResult:
    users: int
    seed: int
    days: float
    truth: dict[str, Any]
    learning_curve: list[dict[str, Any]]
    counts: dict[str, int]
    wall_s: float
    people: list[User] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {name: {**m["means"], **{f"{v}_effect": e for v, e in m["effects"].items()}}
               for name, m in self.truth["metrics"].items()}
        return {"users": self.users, "days": self.days, "wall_s": round(self.wall_s, 2),
                "units": self.truth["units"], "decision": self.truth["decision"],
                "genres_served_7d": self.truth["genres_served_7d"], "metrics": out}


def credit_rewards(
    decisions: list[tuple[int, str]], events: list[ListeningEvent], window_ms: int
) -> dict[int, float]:
    """Reward per decision (its position): ms of plays of its arm, to the most recent eligible decision."""
    rewards = dict.fromkeys(range(len(decisions)), 0.0)
    for event in events:
        if event.type is not EventType.PLAY:
            continue
        best = None
        for k, (ts, arm) in enumerate(decisions):
            if arm == event.genre and ts <= event.ts < ts + window_ms:
                best = k  # decisions are in time order: the last one wins
        if best is not None:
            rewards[best] += event.ms_played
    return rewards


def _learn_due(pending: list[tuple[int, int, str, dict[str, float], str, float]], ts: int,
               policies: dict[str, Any], reward_fn: Callable[[float], float]) -> int:
    """Apply every reward whose update is due by ``ts``, in due order; how many were applied."""
    applied = 0
    while pending and pending[0][0] <= ts:
        _, _, learner, context, arm, reward = heapq.heappop(pending)
        policies[learner].update(context, arm, reward_fn(reward))
        applied += 1
    return applied


def _play_session(
    params: ModelParams, user: User, ts: int, day: int, state: UserFeatureState, policy: Any, arms: list[str],
    variant: str | None,
) -> tuple[list[ListeningEvent], list[tuple[int, str]], list[dict[str, float]]]:
    """One session: each recommendation chosen by ``policy`` from the user's features as of that
    moment; the session's events, its decisions ``(ts, arm)`` and the contexts they were made in."""
    events: list[ListeningEvent] = []
    applied = 0
    decisions: list[tuple[int, str]] = []
    contexts: list[dict[str, float]] = []
    run = session(params, user, ts, day, events)
    try:
        at = run.send(None)
        while True:
            for event in events[applied:]:
                state.apply(event)
            applied = len(events)
            context = {k: float(v) for k, v in state.features().items()}
            arm = policy.choose(context, arms).arm
            if user.exposed_at is None and variant is not None:
                user.exposed_at, user.variant = at, variant
            decisions.append((at, arm))
            contexts.append(context)
            at = run.send(arm)
    except StopIteration:
        pass
    for event in events[applied:]:
        state.apply(event)
    return events, decisions, contexts


def run_offline(
    *,
    users: int = 2000,
    seed: int = 0,
    spec: ExperimentSpec | None = None,
    params: ModelParams = ModelParams(),  # noqa: B008 - frozen
    reward_window_ms: int = REWARD_WINDOW_MS,
    update_lag_ms: int = HOUR_MS,
    reward_fn: Callable[[float], float] = float,
) -> OfflineResult:
    """Simulate ``users`` users against the spec's policies in process; see the module docstring."""
    began = time.perf_counter()
    spec = spec or load_demo_spec()
    policies = make_policies(spec, seed=seed)
    variant_policy = {v.name: v.policy for v in spec.variants}
    people = make_users(params, users=users, seed=seed)
    config = FeatureConfig(top_genres=params.genres)
    states = {u.user_id: UserFeatureState(u.user_id, config=config) for u in people}
    arms = list(params.genres)
    agenda = sorted((ts, u.index, day) for u in people for ts, day in u.slot_times(params))
    pending: list[tuple[int, int, str, dict[str, float], str, float]] = []  # (due, seq, policy, ctx, arm, reward)
    curve = LearningCurve()
    counts = {"sessions": 0, "recommendations": 0, "events": 0, "updates": 0}
    seq = 0
    for ts, index, day in agenda:
        counts["updates"] += _learn_due(pending, ts, policies, reward_fn)
        user = people[index]
        state = states[user.user_id]
        variant = assign(spec, user.user_id, at_ms=ts)
        name = variant_policy[variant] if variant is not None else "popularity"
        events, decisions, contexts = _play_session(params, user, ts, day, state, policies[name], arms, variant)
        counts["events"] += len(events)
        counts["sessions"] += bool(events)
        counts["recommendations"] += len(decisions)
        rewards = credit_rewards(decisions, events, reward_window_ms)
        recs = [e for e in user.expected[-len(decisions) - 1:] if e.arm is not None] if decisions else []
        for k, (at, arm) in enumerate(decisions):
            seq += 1
            heapq.heappush(pending, (at + reward_window_ms + update_lag_ms, seq, name, contexts[k], arm, rewards[k]))
            if variant is not None and k < len(recs):
                curve.add(variant, at, recs[k].played, rewards[k])
    truth = compute_truth(people, spec)
    days = (params.horizon_ms() - ORIGIN_MS) / DAY_MS
    return OfflineResult(users=users, seed=seed, days=round(days, 2), truth=truth, learning_curve=curve.rows(),
                         counts=counts, wall_s=time.perf_counter() - began, people=people)


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.simulation.offline --users 2000 --seed 0``: the run's summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-lag-hours", type=float, default=1.0)
    parser.add_argument("--curve", action="store_true", help="print the learning curve too")
    args = parser.parse_args(argv)
    result = run_offline(users=args.users, seed=args.seed, update_lag_ms=int(args.update_lag_hours * HOUR_MS))
    out = result.summary()
    if args.curve:
        out["learning_curve"] = result.learning_curve
    print(json.dumps(out, indent=2))
    return 0

