"""``tandem evaluate-policy``: judge a candidate policy on the logged decisions before it serves anyone.

The decisions log (with the propensities serving logged) is joined with its
rewards by the same event-time join the learner uses; the candidate, a fresh
policy or the newest snapshot of one, gives its probabilities for each logged
context; ``experiments.ope.estimators`` estimates the candidate's value (IPS, SNIPS, doubly
robust) and, for reference, the logging policy's own (the mean logged reward).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from experiments.ope.estimators import evaluate, from_decisions
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import DECISIONS, EVENTS, MODELS
from infra.settings import Settings
from streams.events import Decision, ListeningEvent, ModelSnapshot, decode
from streams.learning.joiner import RewardJoiner
from streams.learning.rewards import one_per_play
from streams.policies import Policy, make_policy, policy_from_state


def logged_rewards(settings: Settings, *, policy: str | None = None) -> list[tuple[Decision, float]]:
    """Every decision whose reward window has closed by the end of the log, with its reward."""
    joiner = RewardJoiner(reward_fn=one_per_play)
    records: list[tuple[int, Decision | ListeningEvent]] = []
    for record in read_topic(settings, settings.topic(DECISIONS)):
        decision = decode(record.value, Decision)
        if policy is None or decision.policy == policy:
            records.append((decision.ts, decision))
    for record in read_topic(settings, settings.topic(EVENTS)):
        try:
            event = decode(record.value, ListeningEvent)
        except ValueError:
            continue  # the workers dead-letter it; here it is simply not a reward
        records.append((event.ts, event))
    records.sort(key=lambda item: item[0])
    for _, item in records:
        if isinstance(item, Decision):
            joiner.add_decision(item)
        else:
            joiner.add_event(item)
    newest = records[-1][0] if records else 0
    return [(reward.decision, reward.reward) for reward in joiner.advance(newest)]


def candidate(settings: Settings, name: str, params: dict[str, Any], *, from_snapshot: bool) -> Policy:
    if from_snapshot:
        snapshots = newest_per_key(read_topic(settings, settings.topic(MODELS)))
        record = snapshots.get(name.encode())
        if record is None:
            raise LookupError(f"no snapshot of {name!r} on {settings.topic(MODELS)}")
        return policy_from_state(decode(record.value, ModelSnapshot).state, seed=0)
    return make_policy(name, seed=0, **params)


def evaluate_policy(
    settings: Settings, *, name: str, params: dict[str, Any], from_snapshot: bool, logged_policy: str | None
) -> dict[str, Any]:
    pairs = logged_rewards(settings, policy=logged_policy)
    target = candidate(settings, name, params, from_snapshot=from_snapshot)
    estimates = evaluate(from_decisions(pairs), target.probabilities)
    rewards = [reward for _, reward in pairs]
    return {
        "candidate": {"policy": name, "params": params, "from_snapshot": from_snapshot, "version": target.version},
        "logged": {"decisions": len(pairs), "policy": logged_policy or "all",
                   "mean_reward": sum(rewards) / len(rewards) if rewards else None},
        "estimates": {method: dataclasses.asdict(estimate) for method, estimate in estimates.items()},
    }


def print_evaluation(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
