"""Exactly-once learning over partitioned logs: the learner's state and its input offsets, stored together.

A ``CheckpointedLearner`` is an ``OnlineLearner`` fed raw records with the (topic,
partition, offset) they were read from. Per input partition it keeps the *position*: the
next offset its state does not reflect yet. A record below the position is already in the
state (``REFLECTED``) and changes nothing; any other record moves the position past itself
and is decoded and applied (``APPLIED``), or counted as ``INVALID`` when it does not decode.
``checkpoint()`` captures the learner's whole state (``OnlineLearner.to_state``) *and* the
positions in one ``Checkpoint``, so the two can never disagree.

The consumer that drives it must acknowledge a record only once a checkpoint covering it is
durably stored; the committed offsets then never pass the stored positions. After a crash,
``from_checkpoint`` restores the state, the consumer resumes from its committed offsets
(at or below the positions), the records in between are recognised as ``REFLECTED``, and
from the positions on every record is applied once: nothing lost, nothing counted twice.

A record *above* the position of a partition the checkpoint knows means offsets were
committed past what this learner's checkpoint holds (another writer of the same learner,
or retention deleting unread records): the records in between were never applied here.
That is counted (``counts["gaps"]``) and logged as an error, never hidden.

On a topic a checkpoint is records of a compacted topic (``Checkpoint.records``): the state
as JSON, zlib-compressed and cut into ``CheckpointPart`` records of at most
``MAX_PART_STATE_BYTES``, then the ``LearnerCheckpoint`` head naming them with their digest.
The state grows with the open reward windows (every open decision, every buffered play), so
it has no fixed bound; parts keep each record under the broker's limit whatever its size.
Parts are keyed ``<learner id>/<slot>/<index>`` and a new checkpoint writes the slot the
stored head does *not* use, so a crash while writing one never damages the stored one; the
head is written last, and ``find_checkpoint`` rebuilds the newest head's state from the
newest record of each key, checking every part against the head.

>>> from streams.events import Decision, encode
>>> from streams.learning.learner import OnlineLearner
>>> from streams.policies import make_policy
>>> online = OnlineLearner(policy_factory=lambda name: make_policy(name, seed=1))
>>> learner = CheckpointedLearner(online, decisions_topic="decisions")
>>> decision = encode(Decision(decision_id="d1", user_id="u1", ts=1767225600000, policy="softmax",
...     policy_version=0, arm="jazz", propensity=0.5, arms=["jazz", "rock"]))
>>> learner.offer("decisions", 0, 0, decision).outcome, learner.offer("decisions", 0, 1, b"{").outcome
(<OfferOutcome.APPLIED: 'applied'>, <OfferOutcome.INVALID: 'invalid'>)
>>> checkpoint = learner.checkpoint(learner_id="tandem-learner", slot=0)
>>> [(p.topic, p.partition, p.offset) for p in checkpoint.head.positions]
[('decisions', 0, 2)]
>>> [key for key, _ in checkpoint.records()]
[b'tandem-learner/0/0', b'tandem-learner']
>>> stored = find_checkpoint(dict(checkpoint.records()), "tandem-learner")
>>> restored = CheckpointedLearner.from_checkpoint(stored, decisions_topic="decisions",
...     policy_factory=lambda name: make_policy(name, seed=1))
>>> restored.offer("decisions", 0, 0, decision).outcome
<OfferOutcome.REFLECTED: 'reflected'>
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from streams.errors import InvalidRecord
from streams.events import (
    MAX_PART_STATE_BYTES,
    CheckpointPart,
    Decision,
    InputPosition,
    LearnerCheckpoint,
    ListeningEvent,
    decode,
    decode_checkpoint,
    decode_checkpoint_part,
    encode_checkpoint,
    new_id,
)
from streams.learning.errors import InvalidLearnerState
from streams.learning.learner import OnlineLearner, Partition
from streams.learning.rewards import RewardFn, one_per_play
from streams.policies import Policy

logger = logging.getLogger(__name__)

Slot = Literal[0, 1]


class OfferOutcome(StrEnum):
    APPLIED = "applied"  # new to the state: fed to the learner (whatever the joiner made of it)
    REFLECTED = "reflected"  # below the position: the state already holds it
    INVALID = "invalid"  # not a valid record: the position moves past it, nothing else


@dataclass(frozen=True, slots=True)
class Offered:
    outcome: OfferOutcome
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
            self.counts[OfferOutcome.REFLECTED.value] += 1
            return Offered(OfferOutcome.REFLECTED)
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
            self.counts[OfferOutcome.INVALID.value] += 1
            return Offered(OfferOutcome.INVALID, exc)
        self.counts[OfferOutcome.APPLIED.value] += 1
        return Offered(OfferOutcome.APPLIED)

    def advance(self) -> int:
        return self.learner.advance()

    def checkpoint(self, *, learner_id: str, slot: Slot = 0) -> Checkpoint:
        """The state and the positions now, as one checkpoint numbered ``seq`` (then ``seq + 1``, ...)
        whose parts go to ``slot`` (0 or 1: the one the stored checkpoint does not use)."""
        positions = [InputPosition(topic=t, partition=p, offset=o) for (t, p), o in sorted(self.positions.items())]
        checkpoint = pack(self.learner.to_state(), learner_id=learner_id, seq=self.seq, ts=self.learner.event_time,
                          positions=positions, slot=slot)
        self.seq += 1
        return checkpoint

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
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
            checkpoint.state(), policy_factory=policy_factory, reward_fn=reward_fn,
            snapshot_every_updates=snapshot_every_updates, snapshot_every_s=snapshot_every_s, clock=clock,
        )
        positions = {(p.topic, p.partition): p.offset for p in checkpoint.head.positions}
        return cls(learner, decisions_topic=decisions_topic, positions=positions, seq=checkpoint.head.seq + 1)


# -- checkpoints as records -------------------------------------------------------------


def part_key(learner_id: str, slot: Slot, index: int) -> bytes:
    return f"{learner_id}/{slot}/{index}".encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint's head and the parts of its compressed state (see the module docstring)."""

    head: LearnerCheckpoint
    parts: tuple[CheckpointPart, ...]

    def records(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` to write in this order: the parts, then the head."""
        learner_id, slot = self.head.learner_id, self.head.slot
        records = [(part_key(learner_id, slot, part.index), encode_checkpoint(part)) for part in self.parts]
        return [*records, (learner_id.encode(), encode_checkpoint(self.head))]

    def state(self) -> dict[str, Any]:
        """The learner state, checked against the head (``InvalidLearnerState`` if anything disagrees)."""
        head = self.head
        if len(self.parts) != head.parts:
            raise InvalidLearnerState(f"checkpoint {head.seq}: {len(self.parts)} parts, the head names {head.parts}")
        for index, part in enumerate(self.parts):
            if part.checkpoint_id != head.checkpoint_id or part.index != index:
                raise InvalidLearnerState(f"checkpoint {head.seq}: part {index} is part {part.index} of "
                                          f"checkpoint {part.checkpoint_id!r}, not of {head.checkpoint_id!r}")
        compressed = b"".join(base64.b64decode(part.data) for part in self.parts)
        if len(compressed) != head.state_bytes or hashlib.sha256(compressed).hexdigest() != head.state_sha256:
            raise InvalidLearnerState(f"checkpoint {head.seq}: the parts do not match the head's length and digest")
        try:
            state = json.loads(zlib.decompress(compressed), parse_constant=_reject_nonfinite)
        except (zlib.error, ValueError) as exc:
            raise InvalidLearnerState(f"checkpoint {head.seq}: state is not compressed JSON ({exc})") from exc
        if not isinstance(state, dict):
            raise InvalidLearnerState(f"checkpoint {head.seq}: state is not a JSON object")
        return state


def pack(
    state: Mapping[str, Any], *, learner_id: str, seq: int, ts: int, positions: list[InputPosition], slot: Slot,
    checkpoint_id: str | None = None,
) -> Checkpoint:
    """``state`` (JSON types) as a head and its parts."""
    compressed = zlib.compress(json.dumps(state, separators=(",", ":"), allow_nan=False).encode("utf-8"), 1)
    checkpoint_id = checkpoint_id or new_id()
    parts = tuple(
        CheckpointPart(checkpoint_id=checkpoint_id, index=index,
                       data=base64.b64encode(compressed[start:start + MAX_PART_STATE_BYTES]).decode("ascii"))
        for index, start in enumerate(range(0, max(len(compressed), 1), MAX_PART_STATE_BYTES))
    )
    head = LearnerCheckpoint(
        checkpoint_id=checkpoint_id, learner_id=learner_id, seq=seq, ts=ts, positions=positions,
        slot=slot, parts=len(parts), state_bytes=len(compressed),
        state_sha256=hashlib.sha256(compressed).hexdigest(),
    )
    return Checkpoint(head, parts)


def find_checkpoint(newest: Mapping[bytes | None, bytes | None], learner_id: str) -> Checkpoint | None:
    """The newest checkpoint of ``learner_id`` from the newest value of each key of its topic;
    None if it has none. A head that cannot be read, or a missing part, raises: starting from
    anything else would lose or repeat updates."""
    raw = newest.get(learner_id.encode())
    if raw is None:
        return None
    head = decode_checkpoint(raw)
    if head.learner_id != learner_id:
        raise InvalidRecord(f"LearnerCheckpoint: learner_id: {head.learner_id!r} under the key {learner_id!r}")
    parts = []
    for index in range(head.parts):
        part = newest.get(part_key(learner_id, head.slot, index))
        if part is None:
            raise InvalidLearnerState(f"checkpoint {head.seq}: part {index} of {head.parts} is missing")
        parts.append(decode_checkpoint_part(part))
    checkpoint = Checkpoint(head, tuple(parts))
    checkpoint.state()  # checks the parts against the head now, not at first use
    return checkpoint


def _reject_nonfinite(token: str) -> float:
    raise ValueError(f"non-finite number {token} is not valid JSON")
