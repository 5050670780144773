"""Exactly-once learning over partitioned logs: the learner's state and its input offsets, stored together.

A ``CheckpointedLearner`` is an ``OnlineLearner`` fed raw records with the (topic,
partition, offset) they were read from. Per input partition it keeps the *position*: the
next offset its state does not reflect yet. A record below the position is already in the
state (``REFLECTED``) and changes nothing; any other record moves the position past itself
and is decoded and applied (``APPLIED``), or counted as ``INVALID`` when it does not decode.
``checkpoint()`` captures the learner's whole state (``OnlineLearner.to_state``) *and* the
positions in one ``LearnerCheckpoint`` record, so the two can never disagree.

The consumer that drives it must acknowledge a record only once a checkpoint covering it is
durably stored; the committed offsets then never pass the stored positions. After a crash,
``from_checkpoint`` restores the state, the consumer resumes from its committed offsets
(at or below the positions), the records in between are recognised as ``REFLECTED``, and
from the positions on every record is applied once: nothing lost, nothing counted twice.

A record *above* the position of a partition the checkpoint knows means offsets were
committed past what this learner's checkpoint holds (another writer of the same learner,
or retention deleting unread records): the records in between were never applied here.
That is counted (``counts["gaps"]``) and logged as an error, never hidden.

>>> from streams.events import Decision, encode
>>> from streams.learning.learner import OnlineLearner
>>> from streams.policies import make_policy
>>> online = OnlineLearner(policy_factory=lambda name: make_policy(name, seed=1))
>>> learner = CheckpointedLearner(online, decisions_topic="decisions")
>>> decision = encode(Decision(decision_id="d1", user_id="u1", ts=1767225600000, policy="softmax",
...     policy_version=0, arm="jazz", propensity=0.5, arms=["jazz", "rock"]))
>>> learner.offer("decisions", 0, 0, decision).outcome, learner.offer("decisions", 0, 1, b"{").outcome
(<Outcome.APPLIED: 'applied'>, <Outcome.INVALID: 'invalid'>)
>>> checkpoint = learner.checkpoint(learner_id="tandem-personalization")
>>> [(p.topic, p.partition, p.offset) for p in checkpoint.positions]
[('decisions', 0, 2)]
>>> restored = CheckpointedLearner.from_checkpoint(checkpoint, decisions_topic="decisions",
...     policy_factory=lambda name: make_policy(name, seed=1))
>>> restored.offer("decisions", 0, 0, decision).outcome
<Outcome.REFLECTED: 'reflected'>
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from streams.errors import InvalidRecord
from streams.events import Decision, InputPosition, LearnerCheckpoint, ListeningEvent, decode, new_id
from streams.learning.learner import OnlineLearner, Partition
from streams.learning.rewards import RewardFn, one_per_play
from streams.policies import Policy

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    APPLIED = "applied"  # new to the state: fed to the learner (whatever the joiner made of it)
    REFLECTED = "reflected"  # below the position: the state already holds it
    INVALID = "invalid"  # not a valid record: the position moves past it, nothing else


@dataclass(frozen=True, slots=True)
class Offered:
    outcome: Outcome
    error: InvalidRecord | None = None  # why an INVALID record was refused


class CheckpointedLearner:
    """An ``OnlineLearner`` that knows which input offsets its state reflects (see the module docstring).

    Records of ``decisions_topic`` are decisions; records of any other topic are listening events.
    """

    def __init__(
        self,
        learner: OnlineLearner,
        *,
        decisions_topic: str,
        positions: Mapping[Partition, int] | None = None,
        seq: int = 0,
    ) -> None:
        self.learner = learner
        self.decisions_topic = decisions_topic
        self.positions: dict[Partition, int] = dict(positions or {})
        self.seq = seq  # the number the next checkpoint gets
        self.counts: Counter[str] = Counter()

    def offer(self, topic: str, partition: int, offset: int, value: bytes | None) -> Offered:
        """Apply the record read at ``offset`` of ``(topic, partition)`` unless the state already holds it."""
        key = (topic, partition)
        position = self.positions.get(key)
        if position is not None and offset < position:
            self.counts[Outcome.REFLECTED.value] += 1
            return Offered(Outcome.REFLECTED)
        if position is not None and offset > position:
            self.counts["gaps"] += 1
            logger.error("%s[%d]: offsets %d..%d were committed past this learner's checkpoint and never "
                         "applied here (a second writer of this learner, or retention?)",
                         topic, partition, position, offset - 1)
        self.positions[key] = offset + 1
        try:
            if topic == self.decisions_topic:
                self.learner.add_decision(decode(value or b"", Decision), key)
            else:
                self.learner.add_event(decode(value or b"", ListeningEvent), key)
        except InvalidRecord as exc:
            self.counts[Outcome.INVALID.value] += 1
            return Offered(Outcome.INVALID, exc)
        self.counts[Outcome.APPLIED.value] += 1
        return Offered(Outcome.APPLIED)

    def advance(self) -> int:
        return self.learner.advance()

    def checkpoint(self, *, learner_id: str) -> LearnerCheckpoint:
        """The state and the positions now, as one record; numbered ``seq``, ``seq + 1``, ..."""
        checkpoint = LearnerCheckpoint(
            checkpoint_id=new_id(),
            learner_id=learner_id,
            seq=self.seq,
            ts=self.learner.event_time,
            positions=[InputPosition(topic=t, partition=p, offset=o) for (t, p), o in sorted(self.positions.items())],
            state=self.learner.to_state(),
        )
        self.seq += 1
        return checkpoint

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: LearnerCheckpoint,
        *,
        decisions_topic: str,
        policy_factory: Callable[[str], Policy],
        reward_fn: RewardFn = one_per_play,
        snapshot_every_updates: int = 200,
        snapshot_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> CheckpointedLearner:
        """The learner and positions ``checkpoint`` holds (``InvalidLearnerState`` if its state is malformed)."""
        learner = OnlineLearner.from_state(
            checkpoint.state, policy_factory=policy_factory, reward_fn=reward_fn,
            snapshot_every_updates=snapshot_every_updates, snapshot_every_s=snapshot_every_s, clock=clock,
        )
        positions = {(p.topic, p.partition): p.offset for p in checkpoint.positions}
        return cls(learner, decisions_topic=decisions_topic, positions=positions, seq=checkpoint.seq + 1)
