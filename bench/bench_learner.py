"""Learner throughput: decisions joined with their rewards and applied to a LinUCB policy, in process.

    python -m bench.bench_learner [--decisions 20000]

Prints JSON: updates per second through ``OnlineLearner`` (decode excluded), with the
policy's bare ``update`` cost on the same contexts as the same-run baseline, one call per
update (``policy_update_only_per_s``) and in batches of 200 as the learner applies them
(``policy_update_many_per_s``, the same state bit for bit). ``long_term_updates_per_s`` is the
same learner run over the same records with the long-term-aware LinUCB (``linucb_long_term``:
the reward plus the surrogate's value of a discovered genre), and ``learner.long_term_ratio``
its rate over the plain LinUCB's in this run (the target: at least 0.7); the two alternate, three
runs each, and each rate is its fastest run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from streams.events import Decision, EventType, ListeningEvent
from streams.features import default_features
from streams.learning.learner import OnlineLearner
from streams.policies import make_policy

T0_MS = 1_767_225_600_000
GENRES = ("pop", "rock", "hip_hop", "electronic", "jazz", "classical", "country", "latin")


def workload(decisions: int, seed: int) -> tuple[list[Decision], list[ListeningEvent]]:
    rng = random.Random(seed)
    names = list(default_features())
    made, plays = [], []
    for number in range(decisions):
        ts = T0_MS + number * 1000
        arm = rng.choice(GENRES)
        context = {name: rng.random() for name in names}
        if rng.random() < 0.3:  # a genre new to the user this week: the long-term-aware reward adds its value
            context[f"affinity_{arm}_7d"] = 0.0
        made.append(Decision(decision_id=f"d{number}", user_id=f"u{number % 500}", ts=ts, policy="linucb",
                             policy_version=0, arm=arm, propensity=0.125, arms=list(GENRES), context=context))
        if rng.random() < 0.6:
            plays.append(ListeningEvent(event_id=f"e{number}", user_id=f"u{number % 500}", ts=ts + 60_000,
                                        type=EventType.PLAY, item_id=f"{arm}-1", genre=arm, ms_played=180_000))
    return made, plays


#: The long-term-aware policy's parameters in the benchmark (a discovery worth 2.5 plays).
LONG_TERM_PARAMS = {"long_term_weight": 50.0, "discovery_value": 0.05}


def learn(made: list[Decision], plays: list[ListeningEvent], *, seed: int, policy: str = "linucb",
          params: dict[str, Any] | None = None) -> tuple[OnlineLearner, float]:
    """Every decision and play through an ``OnlineLearner`` whose decisions name ``policy``; its seconds."""
    if policy != "linucb":
        made = [d.model_copy(update={"policy": policy}) for d in made]
    online = OnlineLearner(policy_factory=lambda name: make_policy(name, seed=seed, **(params or {})),
                           allowed_lateness_ms=0, snapshot_every_updates=10**9, snapshot_every_s=10**9)
    plays_by_ts = iter(sorted(plays, key=lambda event: event.ts))
    pending = next(plays_by_ts, None)
    began = time.perf_counter()
    for index, decision in enumerate(made):
        online.add_decision(decision, ("decisions", 0))
        while pending is not None and pending.ts <= decision.ts:
            online.add_event(pending, ("events", 0))
            pending = next(plays_by_ts, None)
        if index % 200 == 0:
            online.advance()
    # Records an hour past the last decision on both inputs close every window.
    end = made[-1].ts + 3_600_000
    online.add_event(ListeningEvent(event_id="end", user_id="x", ts=end, type=EventType.SESSION_START),
                     ("events", 0))
    online.add_decision(made[-1].model_copy(update={"decision_id": "end", "ts": end}), ("decisions", 0))
    online.advance()
    return online, time.perf_counter() - began


def run(*, decisions: int = 20_000, seed: int = 1) -> dict[str, Any]:
    made, plays = workload(decisions, seed)
    # The plain and the long-term-aware learner alternate, three runs each, and each keeps its fastest:
    # on a shared machine one run's load says little, and the ratio compares the two in the same run.
    online, learner_s = learn(made, plays, seed=seed)
    long_term, long_term_s = learn(made, plays, seed=seed, policy="linucb_long_term", params=LONG_TERM_PARAMS)
    for _ in range(2):
        learner_s = min(learner_s, learn(made, plays, seed=seed)[1])
        long_term_s = min(long_term_s, learn(made, plays, seed=seed, policy="linucb_long_term",
                                             params=LONG_TERM_PARAMS)[1])

    bare = make_policy("linucb", seed=seed)
    began = time.perf_counter()
    for decision in made:
        bare.update(decision.context, decision.arm, 1.0)
    bare_s = time.perf_counter() - began

    batched = make_policy("linucb", seed=seed)
    updates = [(decision.context, decision.arm, 1.0) for decision in made]
    began = time.perf_counter()
    for start in range(0, len(updates), 200):
        batched.update_many(updates[start:start + 200])
    batched_s = time.perf_counter() - began
    return {
        "decisions": decisions,
        "updates": online.updates,
        "updates_per_s": round(online.updates / learner_s),
        "policy_update_only_per_s": round(decisions / bare_s),
        "policy_update_many_per_s": round(decisions / batched_s),
        "join_overhead_ratio": round((decisions / bare_s) / (online.updates / learner_s), 2),
        "long_term_updates_per_s": round(long_term.updates / long_term_s),
        "learner.long_term_ratio": round((long_term.updates / long_term_s) / (online.updates / learner_s), 3),
        "target_long_term_ratio": 0.7,
        "target_updates_per_s": 50_000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args(argv)
    json.dump(run(decisions=args.decisions), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
