"""Experiment specs and policy snapshots that servers reload while they run.

``LiveConfig`` holds what serving reads on every request: the experiment specs (from
the compacted ``experiments`` topic, key = experiment id, value = ``spec_to_json``) and
the policies (from the compacted ``models`` topic, key = policy name, value = a
``ModelSnapshot`` whose ``state`` is ``policy.to_state()``). Records are applied in
topic order, so the newest record of each key wins (reader-side compaction); a ``None``
value (tombstone) removes the key. A record that cannot be applied is counted and
logged and the previous value stays; a spec record that fails validation (or names a
surface parameter that does not exist, or a value of the wrong type) is also handed to
``on_rejected`` as a dead letter.

``LiveConfigReader`` is the background thread that feeds it from the broker. The
request path never waits for it: the specs and policies are swapped in whole, so a
request sees either the old or the new one. A policy named by a spec (or the default
policy) that has no snapshot yet is served fresh, untrained, at version 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from experiments.admission import check_against_surfaces
from experiments.assignment import SurfaceIndex
from experiments.spec import ExperimentSpec, spec_from_json
from experiments.surfaces import Surface, load_surfaces
from streams.events import DeadLetter, ModelSnapshot, dead_letter, decode
from streams.policies import POLICIES, Policy, make_policy, policy_from_state
from streams.serving.sticky import StickyAssignments

logger = logging.getLogger(__name__)


class LiveConfig:
    """The specs and policies in force; updated by one thread, read by the request path."""

    def __init__(
        self, *, surfaces: Mapping[str, Surface] | None = None,
        on_rejected: Callable[[DeadLetter], object] | None = None,
    ) -> None:
        self.surfaces = dict(surfaces) if surfaces is not None else load_surfaces()
        self.sticky = StickyAssignments()
        self.on_rejected = on_rejected
        self._specs: dict[str, ExperimentSpec] = {}
        self._ordered: tuple[ExperimentSpec, ...] = ()
        self._index = SurfaceIndex(())
        self._held: tuple[ExperimentSpec, ...] = ()
        self._loaded: dict[str, Policy] = {}
        self._fresh: dict[tuple[str, tuple[tuple[str, Any], ...]], Policy] = {}  # (name, params) -> policy
        self._lock = threading.Lock()
        self.reloads: Counter[str] = Counter()
        self.reload_errors: Counter[str] = Counter()

    # -- the request path --------------------------------------------------------------

    def specs(self) -> tuple[ExperimentSpec, ...]:
        """The ``running`` experiment specs, ordered by id: the only ones assigned and exposed."""
        return self._ordered

    def index(self) -> SurfaceIndex:
        """The specs arranged by surface and layer for ``experiments.assignment.compose``."""
        return self._index

    def held(self) -> tuple[ExperimentSpec, ...]:
        """The ``stopped`` and ``decided`` experiments, ordered by id: their users get the control,
        without assignment or exposure (a draft was never served and is in neither list)."""
        return self._held

    def policy(self, name: str, params: Mapping[str, Any] | None = None) -> Policy:
        """The newest snapshot of ``name``, else a fresh one built with ``params`` (a variant's
        ``policy_params``); ``UnknownPolicy`` if there is neither. A snapshot carries its own params."""
        key = (name, tuple(sorted((params or {}).items())))
        policy = self._loaded.get(name) or self._fresh.get(key)
        if policy is None:
            with self._lock:
                policy = self._fresh.get(key)
                if policy is None:
                    policy = self._fresh[key] = make_policy(name, seed=None, **(params or {}))
        return policy

    def resolvable(self, name: str) -> bool:
        return name in self._loaded or name in POLICIES

    def versions(self) -> dict[str, int]:
        """``{policy name: version}`` of the policies loaded from snapshots or served fresh."""
        out = {name: policy.version for (name, _), policy in self._fresh.items()}
        out.update({name: policy.version for name, policy in self._loaded.items()})
        return dict(sorted(out.items()))

    # -- updates, from the reader thread -----------------------------------------------

    def apply_spec(self, key: bytes | None, value: bytes | None, *, topic: str = "experiments", partition: int = 0,
                   offset: int = -1) -> None:
        experiment = (key or b"").decode("utf-8", errors="replace")
        if value is None:
            specs = {k: v for k, v in self._specs.items() if k != experiment}
            self._set_specs(specs)
            self.reloads["experiments"] += 1
            logger.info("experiment %s removed", experiment)
            return
        try:
            spec = spec_from_json(value)
            if spec.id != experiment:
                raise ValueError(f"key {experiment!r} is not the spec's id {spec.id!r}")
            check_against_surfaces(spec, self.surfaces)
        except ValueError as exc:
            self.reload_errors["experiments"] += 1
            logger.error("experiment record %r not applied (the last good version stays): %s", experiment, exc)
            if self.on_rejected is not None:
                self.on_rejected(dead_letter(raw_value=value, raw_key=key, source_topic=topic, partition=partition,
                                             offset=offset, error=exc, stage="serving.live_config"))
            return
        self._set_specs({**self._specs, spec.id: spec})
        self.reloads["experiments"] += 1
        logger.info("experiment %s %s loaded on surface %s (%s)", spec.id, spec.status, spec.surface,
                    ", ".join(f"{v.name}: {', '.join(sorted(v.params)) or 'defaults'}" for v in spec.variants))

    def _set_specs(self, specs: dict[str, ExperimentSpec]) -> None:
        self._specs = specs
        ordered = [specs[k] for k in sorted(specs)]
        self._ordered = tuple(spec for spec in ordered if spec.status == "running")
        self._held = tuple(spec for spec in ordered if spec.status in ("stopped", "decided"))
        self._index = SurfaceIndex(self._ordered + self._held)  # drafts are never served

    def apply_snapshot(self, key: bytes | None, value: bytes | None, **_origin: Any) -> None:
        name = (key or b"").decode("utf-8", errors="replace")
        if value is None:
            self._loaded = {k: v for k, v in self._loaded.items() if k != name}
            self.reloads["models"] += 1
            logger.info("policy %s snapshot removed", name)
            return
        try:
            snapshot = decode(value, ModelSnapshot)
            if snapshot.policy != name:
                raise ValueError(f"key {name!r} is not the snapshot's policy {snapshot.policy!r}")
            policy = policy_from_state(snapshot.state)
        except (ValueError, KeyError) as exc:  # InvalidRecord, InvalidPolicyState; UnknownPolicy is a KeyError
            self.reload_errors["models"] += 1
            logger.error("policy snapshot %r not applied: %s", name, exc)
            return
        previous = self._loaded.get(name)
        if previous is not None and policy.version < previous.version:
            logger.warning("policy %s goes back from version %d to %d", name, previous.version, policy.version)
        self._loaded = {**self._loaded, name: policy}
        self.reloads["models"] += 1
        logger.info("policy %s version %d loaded (snapshot %s)", name, policy.version, snapshot.snapshot_id)


class LiveConfigReader:
    """A thread that reads the ``experiments`` and ``models`` topics from the start, then follows them."""

    def __init__(
        self, *, live: LiveConfig, consumer_config: dict[str, Any], experiments_topic: str, models_topic: str,
        sticky_topic: str | None = None, poll_ms: int = 200,
    ) -> None:
        self.live = live
        self._config = consumer_config
        self._handlers: dict[str, Callable[..., None]] = {
            experiments_topic: live.apply_spec, models_topic: live.apply_snapshot}
        if sticky_topic is not None:  # bandit experiments' assignments, made by every serving process
            self._handlers[sticky_topic] = live.sticky.apply_record
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once both topics were read to their end
        self.last_poll_monotonic: float | None = None
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="serving-live-config", daemon=True)

    def start(self) -> LiveConfigReader:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = KafkaConsumer(**self._config)
                    assigned = self._assign(consumer)
                    if not assigned:
                        consumer.close()
                        consumer = None
                        self._stop.wait(0.5)
                        continue
                self._poll(consumer, assigned)
            except Exception as exc:  # noqa: BLE001 - the reader must outlive a broker outage
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("live config reader: %s", self.last_error)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def _assign(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        assigned = []
        for topic in self._handlers:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                self.last_error = f"topic {topic} not found"
                return []
            assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return assigned

    def _poll(self, consumer: Any, assigned: list[Any]) -> None:
        batch = consumer.poll(timeout_ms=self._poll_ms, max_records=1000)
        for partition, records in batch.items():
            handler = self._handlers[partition.topic]
            for record in records:
                handler(record.key, record.value, topic=record.topic, partition=record.partition, offset=record.offset)
        self.last_poll_monotonic = time.monotonic()
        if not self.ready.is_set() and all(_caught_up(consumer, tp) for tp in assigned):
            self.ready.set()
            logger.info("live config read to its end: %d experiments, policies %s",
                        len(self.live.specs()), self.live.versions())


def _caught_up(consumer: Any, partition: Any) -> bool:
    highwater = consumer.highwater(partition)
    return highwater is not None and consumer.position(partition) >= highwater
