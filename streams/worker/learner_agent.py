"""The learner agent: a thin Faust adapter around ``streams.learning.OnlineLearner``.

It reads ``decisions`` and ``events`` (co-partitioned: both keyed by user_id with
the same partition count), feeds the learner, closes reward windows every
``ADVANCE_EVERY`` records and publishes due snapshots to the compacted ``models``
topic (key = policy name). At start it warm-starts each policy from the newest
snapshot on that topic, and builds the others with the parameters their
experiment variants give them (``policy_params``).

Crash semantics: the policies are restored from their last snapshot, and Faust
resumes from its last committed offsets; the updates between the two (at most a
snapshot interval's worth, a couple of seconds) may be lost or applied again. A
learning rate tolerates that; the exact figures of tandem are the experiment
stack's, not the bandit's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from infra.settings import Settings
from infra.topic_reader import newest_per_key, read_topic
from streams.errors import InvalidRecord
from streams.events import Decision, ListeningEvent, ModelSnapshot, decode, encode
from streams.learning.learner import OnlineLearner
from streams.policies import Policy, make_policy, policy_from_state
from streams.worker.dead_letters import DeadLetters

logger = logging.getLogger(__name__)

ADVANCE_EVERY = 200
STAGE = "personalization.learner"


def variant_params(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{policy name: policy_params}`` from the experiment specs on the experiments topic."""
    from experiments.spec import spec_from_json

    params: dict[str, dict[str, Any]] = {}
    for record in newest_per_key(read_topic(settings, settings.topic("experiments"))).values():
        if record.value is None:
            continue
        for variant in spec_from_json(record.value).variants:
            params.setdefault(variant.policy, dict(variant.policy_params))
    return params


def warm_start(settings: Settings) -> dict[str, Policy]:
    """The newest snapshot of each policy on the models topic, rebuilt (JSON, never pickle)."""
    policies: dict[str, Policy] = {}
    for key, record in newest_per_key(read_topic(settings, settings.topic("models"))).items():
        try:
            snapshot = decode(record.value or b"", ModelSnapshot)
            policies[snapshot.policy] = policy_from_state(snapshot.state)
        except (InvalidRecord, ValueError) as exc:
            logger.error("models: snapshot %r not loaded: %s", key, exc)
    return policies


def make_learner(settings: Settings) -> OnlineLearner:
    params = variant_params(settings)
    policies = warm_start(settings)
    logger.info("learner warm start: %s", {name: p.version for name, p in policies.items()} or "nothing yet")
    return OnlineLearner(
        policy_factory=lambda name: make_policy(name, seed=None, **params.get(name, {})),
        policies=policies,
    )


def install_learner(app: Any, settings: Settings, *, learner: OnlineLearner | None = None) -> OnlineLearner:
    learner = learner or make_learner(settings)
    decisions_topic = settings.topic("decisions")
    inputs = app.topic(decisions_topic, settings.topic("events"), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    models = app.topic(settings.topic("models"), key_serializer="raw", value_serializer="raw")
    dead_letters = DeadLetters(app.topic(settings.topic("dead-letters"), key_serializer="raw",
                                         value_serializer="raw"))

    @app.agent(inputs, name="learner")
    async def learn(stream: Any) -> None:
        seen = 0
        async for event in stream.events():
            message = event.message
            partition = (message.topic, message.partition)
            try:
                if message.topic == decisions_topic:
                    learner.add_decision(decode(event.value, Decision), partition)
                else:
                    learner.add_event(decode(event.value, ListeningEvent), partition)
            except InvalidRecord as exc:
                if message.topic == decisions_topic:  # bad events are the features agent's to report
                    await dead_letters.publish(message, exc, stage=STAGE)
                continue
            seen += 1
            if seen % ADVANCE_EVERY == 0:
                learner.advance()
                for snapshot in learner.due_snapshots():
                    await models.send(key=snapshot.policy.encode(), value=encode(snapshot))
                    logger.info("published %s", json.dumps({"policy": snapshot.policy, "version": snapshot.version}))

    return learner
