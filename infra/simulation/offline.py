"""The simulator in one process: the user model against real policy objects, no Kafka, no HTTP.

It mirrors what the running stack does, minus the transport: each session's parameters are
composed with ``experiments.assignment.compose`` over the experiments' specs and the home
surface (holdout users get the surface's defaults, as serving does); the ``ranker`` is
``make_policy(name, seed=seed, **params)``, one object per (name, params), as serving shares
one per name; every experiment whose parameter was read is exposed; the context is the
user's features (``UserFeatureState.features()``, as the features worker writes them to
Feast); the reward of a decision is the ms played of the plays of its genre within
``reward_window_ms``, each play credited to the most recent matching decision (the learner's
default join), applied ``update_lag_ms`` after its window closes.

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

from experiments.assignment import compose
from experiments.spec import DEFAULT_SURFACE, DEMO_SPEC_PATH, DEMO_SPEC_PATHS, ExperimentSpec, load_spec
from experiments.surfaces import RANKER, PolicyChoice, load_surfaces
from infra.simulation.model import DAY_MS, HOUR_MS, ORIGIN_MS, ModelParams, Served, User, make_users, session
from infra.simulation.truth import compute_truth
from streams.events import Decision, EventType, ListeningEvent
from streams.features import FeatureConfig, UserFeatureState
from streams.policies import Policy, make_policy

#: The demo experiment shipped with the repository.

REWARD_WINDOW_MS = 30 * 60_000


def load_demo_spec() -> ExperimentSpec:
    return load_spec(DEMO_SPEC_PATH)


def load_demo_specs() -> list[ExperimentSpec]:
    """The demo's experiments: the ranker experiment first (the learning curve follows it)."""
    return [load_spec(path) for path in DEMO_SPEC_PATHS]


class _Policies:
    """One policy object per (name, params), built on first use, as serving keeps them."""

    def __init__(self, *, seed: int) -> None:
        self.seed = seed
        self.by_choice: dict[tuple[str, tuple[tuple[str, Any], ...]], Policy] = {}

    def get(self, choice: PolicyChoice) -> tuple[str, Policy]:
        key = (choice.policy, tuple(sorted(choice.params.items())))
        policy = self.by_choice.get(key)
        if policy is None:
            policy = self.by_choice[key] = make_policy(choice.policy, seed=self.seed, **choice.params)
        return f"{choice.policy}{list(key[1]) if key[1] else ''}", policy


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
    truths: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[ListeningEvent] = field(repr=False, default_factory=list)  # with ``keep_events`` only
    #: with ``keep_decisions`` only: every logged decision with its reward (``reward_fn`` of the ms it earned)
    decisions: list[tuple[Decision, float]] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {name: {**m["means"], **{f"{v}_effect": e for v, e in m["effects"].items()}}
               for name, m in self.truth["metrics"].items()}
        return {"users": self.users, "days": self.days, "wall_s": round(self.wall_s, 2),
                "units": self.truth["units"], "decision": self.truth["decision"],
                "genres_served_7d": self.truth["genres_served_7d"], "metrics": out,
                "experiments": {
                    exp: {"kind": t["kind"], "units": t["units"], "decision": t["decision"],
                          "effects": {name: {v: round(e["relative"], 4) for v, e in m["effects"].items()}
                                      for name, m in t["metrics"].items()}}
                    for exp, t in self.truths.items()}}


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
    num_items: int | None, exposed: dict[str, str],
) -> tuple[list[ListeningEvent], list[tuple[int, str]], list[dict[str, float]], list[float]]:
    """One session: each recommendation chosen by ``policy`` from the user's features as of that
    moment; the session's events, its decisions ``(ts, arm)``, the contexts they were made in and
    the chosen arms' probabilities."""
    events: list[ListeningEvent] = []
    applied = 0
    decisions: list[tuple[int, str]] = []
    contexts: list[dict[str, float]] = []
    propensities: list[float] = []
    run = session(params, user, ts, day, events)
    try:
        at = run.send(None)
        while True:
            for event in events[applied:]:
                state.apply(event)
            applied = len(events)
            context = {k: float(v) for k, v in state.features().items()}
            choice = policy.choose(context, arms)
            arm = choice.arm
            propensities.append(choice.propensity)
            for experiment, variant in exposed.items():
                user.expose(experiment, variant, at)
            decisions.append((at, arm))
            contexts.append(context)
            at = run.send(Served(arm, num_items))
    except StopIteration:
        pass
    for event in events[applied:]:
        state.apply(event)
    return events, decisions, contexts, propensities


def run_offline(
    *,
    users: int = 2000,
    seed: int = 0,
    spec: ExperimentSpec | None = None,
    specs: list[ExperimentSpec] | None = None,
    params: ModelParams = ModelParams(),  # noqa: B008 - frozen
    reward_window_ms: int = REWARD_WINDOW_MS,
    update_lag_ms: int = HOUR_MS,
    reward_fn: Callable[[float], float] = float,
    keep_events: bool = False,
    keep_decisions: bool = False,
) -> OfflineResult:
    """Simulate ``users`` users against the specs' policies in process; see the module docstring.

    ``specs`` default to ``[spec]`` if given, else the demo's experiments; the learning curve and
    ``truth`` follow ``spec`` (default: the first of them), ``truths`` cover them all. With
    ``keep_events`` the result holds every listening event (the surrogate is fitted on them); with
    ``keep_decisions`` every decision as serving logs it (context, arms, propensity) with its reward
    (what the evaluation gate estimates policies on).
    """
    began = time.perf_counter()
    specs = specs if specs is not None else ([spec] if spec is not None else load_demo_specs())
    spec = spec or specs[0]
    surface = load_surfaces()[DEFAULT_SURFACE]
    policies = _Policies(seed=seed)
    people = make_users(params, users=users, seed=seed)
    config = FeatureConfig(top_genres=params.genres)
    states = {u.user_id: UserFeatureState(u.user_id, config=config) for u in people}
    arms = list(params.genres)
    agenda = sorted((ts, u.index, day) for u in people for ts, day in u.slot_times(params))
    pending: list[tuple[int, int, str, dict[str, float], str, float]] = []  # (due, seq, policy, ctx, arm, reward)
    curve = LearningCurve()
    counts = {"sessions": 0, "recommendations": 0, "events": 0, "updates": 0}
    learners: dict[str, Policy] = {}
    kept: list[ListeningEvent] = []
    logged: list[tuple[Decision, float]] = []
    seq = 0
    for ts, index, day in agenda:
        counts["updates"] += _learn_due(pending, ts, learners, reward_fn)
        user = people[index]
        state = states[user.user_id]
        composition = compose(surface, specs, user.user_id, at_ms=ts)
        name, policy = policies.get(composition.read(RANKER))
        learners[name] = policy
        num_items = composition.read("num_items") if "num_items" in composition.values else None
        exposed = composition.used() if day >= 0 else {}
        events, decisions, contexts, propensities = _play_session(params, user, ts, day, state, policy, arms,
                                                                  num_items, exposed)
        counts["events"] += len(events)
        if keep_events:
            kept.extend(events)
        counts["sessions"] += bool(events)
        counts["recommendations"] += len(decisions)
        rewards = credit_rewards(decisions, events, reward_window_ms)
        recs = [e for e in user.expected[-len(decisions) - 1:] if e.arm is not None] if decisions else []
        variant = exposed.get(spec.id)
        for k, (at, arm) in enumerate(decisions):
            seq += 1
            heapq.heappush(pending, (at + reward_window_ms + update_lag_ms, seq, name, contexts[k], arm, rewards[k]))
            if keep_decisions:
                logged.append((Decision(decision_id=f"sim-{seed}-{seq}", user_id=user.user_id, ts=at,
                                        policy=composition.read(RANKER).policy, policy_version=0, arm=arm,
                                        propensity=propensities[k], arms=arms, context=contexts[k],
                                        assignments=dict(exposed)), reward_fn(rewards[k])))
            if variant is not None and k < len(recs):
                curve.add(variant, at, recs[k].played, rewards[k])
    truths = {s.id: compute_truth(people, s) for s in specs}
    days = (params.horizon_ms() - ORIGIN_MS) / DAY_MS
    return OfflineResult(users=users, seed=seed, days=round(days, 2), truth=truths[spec.id],
                         learning_curve=curve.rows(), counts=counts, wall_s=time.perf_counter() - began,
                         people=people, truths=truths, events=kept, decisions=logged)


def _played(ms: float) -> float:
    """The learner's reward (``one_per_play``) from the ms a decision earned: 1 when something was played."""
    return 1.0 if ms > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.simulation.offline --users 2000 --seed 0``: the run's summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-lag-hours", type=float, default=1.0)
    parser.add_argument("--curve", action="store_true", help="print the learning curve too")
    parser.add_argument("--spec", default=None, help="one spec file to run instead of the demo's experiments")
    parser.add_argument("--reward", choices=("ms", "plays"), default="ms",
                        help="what a decision's reward is: ms played (default) or 1 if played, as the learner")
    args = parser.parse_args(argv)
    specs = [load_spec(args.spec)] if args.spec else None
    result = run_offline(users=args.users, seed=args.seed, update_lag_ms=int(args.update_lag_hours * HOUR_MS),
                         specs=specs, reward_fn=_played if args.reward == "plays" else float)
    out = result.summary()
    if args.curve:
        out["learning_curve"] = result.learning_curve
    print(json.dumps(out, indent=2))
    return 0

