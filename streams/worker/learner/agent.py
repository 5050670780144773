"""The learner agent: a thin Faust adapter around ``streams.learning.CheckpointedLearner``.

It runs in the learner's own app (``streams.worker.learner.app``). It reads
``decisions`` and ``events`` (co-partitioned: both keyed by user_id with the same
partition count), offers every record to the learner with its offset, closes reward
windows every ``ADVANCE_EVERY`` records and on every checkpoint, and publishes due
snapshots to the compacted ``models`` topic (key = policy name), which serving reads.

Exactness across a crash. The whole learner (policies, the joiner's open decisions and
buffered events, the newest event time per input partition) and, per input partition,
the next offset it does not reflect are written together as one checkpoint to the
compacted ``learner-checkpoints`` topic (a ``LearnerCheckpoint`` head keyed by the app id,
written after the parts of its compressed state: ``streams.learning.checkpoint``) every
``checkpoint_every_s`` seconds while records wait. The stream runs with ``noack()``: a
record is acknowledged only once a checkpoint covering it was *delivered*, so the offsets
Faust commits (it commits only acknowledged records, and only once every agent reading
them acknowledged them) never pass the stored positions. At start the learner is rebuilt
from the newest checkpoint; Faust resumes from the committed offsets, at or below those
positions; the records in between are already in the state and are skipped
(``REFLECTED``); every later record is applied once. Nothing is lost, nothing counted twice.

Without any checkpoint (the app's first start), each policy warm-starts from its newest
snapshot on ``models`` (or is built with the parameters its experiment variant gives it),
and that state is stored as the first checkpoint, with no positions, *before* anything is
learned: a crash before the next checkpoint then restarts from it rather than from
snapshots that already hold updates of the crashed run. Once a checkpoint exists the
snapshots on ``models`` are never read back: they are outputs only. Snapshots may run
ahead of the checkpoint; the replay after a crash rebuilds the very same versions, and a
restored learner republishes every policy once.

Dead letters (undecodable decisions) and snapshots are sent before the acknowledgement
of the records behind them, and Faust flushes its producer before it commits offsets, so
a crash may repeat them (same ``dead_letter_id``, same snapshot version), never lose them.

Which records are *late* depends on when the watermark moved relative to their arrival,
as for any watermark: with every partition in event-time order (how the simulation
publishes) and the learner's hour of allowed lateness, nothing is late and the result is
a function of the records alone, whatever the interleaving of partitions. That holds because every
assigned input partition holds the watermark back until it delivers a valid record: Faust fetches a
batch per partition, and the first batches read (plays days ahead of the decisions, in the chaos
harness's hostile log) once made every decision read after them late. A partition read to its end
(its high-water mark) without a valid record, empty or bad records only, stops holding it, so it
cannot stall learning; a valid record it gets later holds it again from its own event time.

Rebalances (one worker). Faust seeks every assigned partition back to its committed offset
after a rebalance. The learner keeps its state, drops the records it had not acknowledged
yet (never acknowledged now: their generation is gone) and skips their redelivered copies
as ``REFLECTED``, acknowledging them with the next checkpoint; a checkpoint stored while
the generation changed acknowledges nothing. A partition the worker no longer reads keeps
its newest event time in the learner, so it holds the watermark back instead of letting
windows close without it. The acknowledgement rules are unit-tested on ``LearnerAdapter``;
the SIGKILL test goes through the group joins of a restart, but no test drives a
rebalance in the middle of a running stream.

One worker per app: a limit, not a tested mode. The policies are global (every partition
updates them), so the learner is one state under one checkpoint key. Two workers of the app
would each learn from their own partitions, publish diverging snapshots under the same
policy names and overwrite each other's checkpoint; a restart from one of them misses what
the other had committed. Where the restored checkpoint knows the partition, that is
counted and logged as a gap (offsets committed past its position), not silent; the
divergence while both run is not detected. Scaling the learner out would need mergeable
policy statistics and a checkpoint per partition group; it is not done.

Cost. The state grows with the open windows: in the shortened demo (700 users) it was
0.3-1.8 MB of JSON, the largest while the worker caught up with a backlog (the slowest
partition holds the watermark, so the plays of the others wait in the joiner). It is
built on the event loop every ``checkpoint_every_s`` while records flow (measured: ~70 ms
to dump 3 MB of state as JSON, ~15 ms to compress it about 5-fold). A checkpoint that
cannot be stored is logged as an error; learning goes on, and its records wait for the
next checkpoint that is stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from infra.kafka.config import producer_config
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import DEAD_LETTERS, DECISIONS, EVENTS, EXPERIMENTS, LEARNER_CHECKPOINTS, MODELS
from infra.settings import Settings
from streams.errors import InvalidRecord
from streams.events import ModelSnapshot, decode, encode
from streams.learning import Checkpoint, CheckpointedLearner, OfferOutcome, OnlineLearner, find_checkpoint
from streams.learning.checkpoint import Slot
from streams.learning.learner import Partition
from streams.policies import Policy, make_policy, policy_from_state
from streams.worker.app import on_rebalance
from streams.worker.dead_letters import DeadLetters

logger = logging.getLogger(__name__)

ADVANCE_EVERY = 200
STAGE = "personalization.learner"
CHECKPOINT_EVERY_S = 2.0


def variant_params(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{policy name: policy_params}`` from the experiment specs on the experiments topic."""
    from experiments.spec import spec_from_json

    params: dict[str, dict[str, Any]] = {}
    for key, record in newest_per_key(read_topic(settings, settings.topic(EXPERIMENTS))).items():
        if record.value is None:
            continue
        try:
            variants = spec_from_json(record.value).variants
        except ValueError as exc:  # InvalidSpec: serving and the aggregator dead-letter it; the learner skips it
            logger.error("experiments: record %r not read: %s", key, exc)
            continue
        for variant in variants:
            ranker = variant.ranker
            if ranker is not None:
                params.setdefault(ranker.policy, dict(ranker.params))
    return params


def warm_start(settings: Settings) -> dict[str, Policy]:
    """The newest snapshot of each policy on the models topic, rebuilt (JSON, never pickle)."""
    policies: dict[str, Policy] = {}
    for key, record in newest_per_key(read_topic(settings, settings.topic(MODELS))).items():
        try:
            snapshot = decode(record.value or b"", ModelSnapshot)
            policies[snapshot.policy] = policy_from_state(snapshot.state)
        except (InvalidRecord, ValueError) as exc:
            logger.error("models: snapshot %r not loaded: %s", key, exc)
    return policies


def newest_checkpoint(settings: Settings, learner_id: str) -> Checkpoint | None:
    """The newest checkpoint of ``learner_id``; an unreadable one raises (``InvalidRecord``,
    ``InvalidLearnerState``): starting from anything else would lose or repeat updates."""
    newest = newest_per_key(read_topic(settings, settings.topic(LEARNER_CHECKPOINTS)))
    return find_checkpoint({key: record.value for key, record in newest.items()}, learner_id)


def store_checkpoint(settings: Settings, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint``, parts first, and wait for its delivery (outside Faust, before the worker starts)."""
    *parts, head = checkpoint.records()
    with KafkaPublisher(config=producer_config(settings), topic=settings.topic(LEARNER_CHECKPOINTS)) as publisher:
        for key, value in parts:
            publisher.publish_bytes(key, value)
        publisher.flush()
        publisher.publish_bytes(*head)


def make_learner(settings: Settings, *, learner_id: str) -> tuple[CheckpointedLearner, Slot]:
    """The learner restored from its newest checkpoint, or warm-started and stored as the first
    one; and the slot of that checkpoint's parts."""
    params = variant_params(settings)

    def factory(name: str) -> Policy:
        return make_policy(name, seed=None, **params.get(name, {}))

    decisions_topic = settings.topic(DECISIONS)
    checkpoint = newest_checkpoint(settings, learner_id)
    if checkpoint is not None:
        learner = CheckpointedLearner.from_checkpoint(checkpoint, decisions_topic=decisions_topic,
                                                      policy_factory=factory)
        logger.info("learner restored from checkpoint %d: %s", checkpoint.head.seq,
                    json.dumps(learner.learner.stats()))
        learner.learner.republish()
        return learner, checkpoint.head.slot
    policies = warm_start(settings)
    logger.info("learner warm start: %s", {name: p.version for name, p in policies.items()} or "nothing yet")
    learner = CheckpointedLearner(OnlineLearner(policy_factory=factory, policies=policies),
                                  decisions_topic=decisions_topic)
    first = learner.checkpoint(learner_id=learner_id, slot=0)
    store_checkpoint(settings, first)
    return learner, first.head.slot


class LearnerAdapter:
    """Everything the learner agent does per record and per checkpoint; see the module docstring.

    ``stored`` are the positions of the newest checkpoint known to be delivered and ``slot``
    the slot of its parts; ``send_checkpoint`` writes a checkpoint's records in order and
    returns once they are all delivered (it raises if one was not)."""

    def __init__(
        self,
        learner: CheckpointedLearner,
        *,
        learner_id: str,
        stored: Mapping[Partition, int],
        slot: Slot,
        send_checkpoint: Callable[[list[tuple[bytes, bytes]]], Awaitable[None]],
        send_snapshot: Callable[[ModelSnapshot], Awaitable[None]],
        dead_letters: DeadLetters,
        generation: Callable[[], Any] = lambda: None,
        caught_up: Callable[[Partition], bool] = lambda partition: False,
    ) -> None:
        self.learner = learner
        self.learner_id = learner_id
        self.stored: dict[Partition, int] = dict(stored)
        self.slot: Slot = slot
        self.send_checkpoint = send_checkpoint
        self.send_snapshot = send_snapshot
        self.dead_letters = dead_letters
        self.generation = generation  # the consumer group generation now (Faust's)
        self.caught_up = caught_up  # whether every record of an input partition was read (none waits)
        self.waiting: list[Any] = []  # Faust events in the state, not yet in a stored checkpoint
        self.checkpoints = 0
        self.failures = 0
        self.last_checkpoint_bytes = 0
        self._offered = 0

    async def handle(self, event: Any) -> None:
        """Offer one Faust event (raw bytes) to the learner; never raises for a bad record."""
        message = event.message
        offered = self.learner.offer(message.topic, message.partition, message.offset, message.value)
        if offered.error is not None and message.topic == self.learner.decisions_topic:
            await self.dead_letters.publish(message, offered.error, stage=STAGE)  # bad events: the features agent's
        if offered.outcome is OfferOutcome.REFLECTED and message.offset < self.stored.get(
                (message.topic, message.partition), 0):
            _ack(event)  # a stored checkpoint holds it already
        else:
            self.waiting.append(event)
        if offered.outcome is not OfferOutcome.REFLECTED:
            self._offered += 1
            if self._offered % ADVANCE_EVERY == 0:
                await self.advance()

    def hold(self, partitions: Iterable[Partition]) -> None:
        """Assigned input partitions hold the watermark back until they deliver a valid record: else the
        first partitions read would move it past the records the others have not delivered yet."""
        for partition in partitions:
            self.learner.learner.declare(partition)

    def release_idle(self) -> None:
        """Stop holding the watermark for the partitions that were read to their end without a valid
        record (empty, or bad records only): nothing known is left to wait for on them."""
        online = self.learner.learner
        for partition in [p for p, ts in online.newest.items() if ts < 0 and self.caught_up(p)]:
            online.forget(partition)

    async def advance(self) -> None:
        """Close the windows the watermark passed and publish the snapshots due."""
        self.release_idle()
        self.learner.advance()
        for snapshot in self.learner.learner.due_snapshots():
            await self.send_snapshot(snapshot)
            logger.info("published %s", json.dumps({"policy": snapshot.policy, "version": snapshot.version}))

    async def checkpoint(self) -> bool:
        """Advance; if records wait, store a checkpoint covering them, then acknowledge them.

        The state, the positions and the records covered are captured in one step with no
        await in between. If the partitions were reassigned meanwhile, nothing is
        acknowledged (their redelivered copies are, next time). A checkpoint that cannot be
        stored leaves its records waiting for the next one."""
        await self.advance()
        if not self.waiting:
            return False
        generation = self.generation()
        covered, self.waiting = self.waiting, []
        checkpoint = self.learner.checkpoint(learner_id=self.learner_id, slot=0 if self.slot else 1)
        head = checkpoint.head
        try:
            records = checkpoint.records()
            await self.send_checkpoint(records)
        except Exception as exc:  # noqa: BLE001 - not delivered: its records wait for the next one
            self.failures += 1
            self.waiting[:0] = covered
            logger.error("learner checkpoint %d not stored (%s: %s); %d records wait", head.seq,
                         type(exc).__name__, exc, len(self.waiting))
            return False
        self.checkpoints += 1
        self.slot = head.slot
        self.last_checkpoint_bytes = sum(len(value) for _, value in records)
        for position in head.positions:
            key = (position.topic, position.partition)
            self.stored[key] = max(self.stored.get(key, 0), position.offset)
        logger.debug("learner checkpoint %d stored: %d parts, %d bytes, %d records", head.seq, head.parts,
                     self.last_checkpoint_bytes, len(covered))
        if self.generation() == generation:
            for event in covered:
                _ack(event)
        return True

    def forget_waiting(self) -> None:
        """On a rebalance: never acknowledge records of the old generation (see the module docstring)."""
        self.waiting.clear()


def _ack(event: Any) -> None:
    try:
        event.ack()
    except Exception:  # noqa: BLE001 - a revoked partition's event: it is replayed anyway
        logger.debug("ack failed", exc_info=True)


def install_learner(app: Any, settings: Settings, *, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> LearnerAdapter:
    """Restore or warm-start the learner, register its agent, checkpoint timer and rebalance handlers."""
    learner_id = app.conf.id
    learner, slot = make_learner(settings, learner_id=learner_id)
    inputs = app.topic(settings.topic(DECISIONS), settings.topic(EVENTS), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    models = app.topic(settings.topic(MODELS), key_serializer="raw", value_serializer="raw")
    checkpoints = app.topic(settings.topic(LEARNER_CHECKPOINTS), key_serializer="raw", value_serializer="raw")
    dead_letters = DeadLetters(app.topic(settings.topic(DEAD_LETTERS), key_serializer="raw",
                                         value_serializer="raw"))

    async def send_checkpoint(records: list[tuple[bytes, bytes]]) -> None:
        *parts, (key, value) = records
        deliveries = [await checkpoints.send(key=k, value=v, force=True) for k, v in parts]
        for delivery in deliveries:
            await delivery  # raises if the broker refused it
        await (await checkpoints.send(key=key, value=value, force=True))  # the head, once its parts are stored

    async def send_snapshot(snapshot: ModelSnapshot) -> None:
        await models.send(key=snapshot.policy.encode(), value=encode(snapshot))

    from faust.types import TP

    def caught_up(partition: Partition) -> bool:
        try:
            highwater = app.consumer.highwater(TP(*partition))
        except Exception:  # noqa: BLE001 - not fetched from yet: unknown, so not caught up
            return False
        return highwater is not None and (highwater == 0 or learner.positions.get(partition, 0) >= highwater)

    adapter = LearnerAdapter(
        learner, learner_id=learner_id, stored=learner.positions, slot=slot, send_checkpoint=send_checkpoint,
        send_snapshot=send_snapshot, dead_letters=dead_letters, generation=lambda: app.consumer_generation_id,
        caught_up=caught_up,
    )
    input_topics = {settings.topic(DECISIONS), settings.topic(EVENTS)}

    @app.agent(inputs, name="learner")
    async def learn(stream: Any) -> None:
        async for event in stream.noack().events():
            await adapter.handle(event)

    @app.timer(interval=checkpoint_every_s)
    async def checkpoint_learner() -> None:
        await adapter.checkpoint()

    on_rebalance(app, adapter.forget_waiting)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust accepts coroutines here
    async def hold_watermark(app: Any, assigned: Any, **kwargs: Any) -> None:
        adapter.hold((tp.topic, tp.partition) for tp in assigned if tp.topic in input_topics)

    return adapter
