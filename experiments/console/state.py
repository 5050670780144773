"""What the console knows: the topics it follows, applied in topic order.

``ConsoleState`` keeps the newest version of every spec (``experiments``), every version of
every ``experiment-metrics`` record (the lift over time is rebuilt from them) and every
decision record (``experiment-decisions``). ``TopicFollower`` is the thread that reads the
three topics from their beginning and then follows them; a record that cannot be applied is
counted and logged, and what was known stays.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from experiments.errors import UnknownExperiment
from experiments.lifecycle import DecisionRecord, version
from experiments.monitor import combine, newest_per_key
from experiments.spec import ExperimentSpec, spec_from_json

logger = logging.getLogger(__name__)


class ConsoleState:
    """Specs, metric record versions and decisions; written by one follower (and write-through), read by all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, ExperimentSpec] = {}
        self._versions: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        self._decisions: dict[str, list[DecisionRecord]] = {}
        self.errors: Counter[str] = Counter()

    # -- updates ---------------------------------------------------------------------------

    def put_spec(self, spec: ExperimentSpec) -> None:
        """Keep ``spec`` unless a newer version is already known (write-through and the topic may race)."""
        with self._lock:
            known = self._specs.get(spec.id)
            if known is None or version(spec) >= version(known):
                self._specs = {**self._specs, spec.id: spec}

    def apply_spec(self, key: bytes | None, value: bytes | None) -> None:
        experiment = (key or b"").decode("utf-8", errors="replace")
        if value is None:
            with self._lock:
                self._specs = {k: v for k, v in self._specs.items() if k != experiment}
            return
        try:
            spec = spec_from_json(value)
            if spec.id != experiment:
                raise ValueError(f"key {experiment!r} is not the spec's id {spec.id!r}")
        except ValueError as exc:
            self.errors["experiments"] += 1
            logger.error("experiment record %r not applied: %s", experiment, exc)
            return
        self.put_spec(spec)

    def apply_metric(self, key: bytes | None, value: bytes | None) -> str | None:
        """Keep one version of a metric record; returns its experiment (None if not applied)."""
        name = (key or b"").decode("utf-8", errors="replace")
        try:
            record = json.loads(value) if value is not None else None
            if not isinstance(record, dict) or not isinstance(record.get("experiment"), str):
                raise ValueError("not a metric record object with an experiment")
            int(record["watermark_ts"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.errors["experiment-metrics"] += 1
            logger.error("metric record %r not applied: %s", name, exc)
            return None
        with self._lock:
            self._versions.setdefault(record["experiment"], []).append((name, record))
        return str(record["experiment"])

    def put_decision(self, record: DecisionRecord) -> None:
        with self._lock:
            known = self._decisions.setdefault(record.experiment, [])
            if all(d.decision_id != record.decision_id for d in known):  # idempotent on the record's id
                known.append(record)

    def apply_decision(self, key: bytes | None, value: bytes | None) -> None:
        try:
            if value is None:
                raise ValueError("a decision is never deleted")
            record = DecisionRecord.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            self.errors["experiment-decisions"] += 1
            logger.error("decision record %r not applied: %s", key, exc)
            return
        self.put_decision(record)

    # -- reads ---------------------------------------------------------------------------

    def specs(self) -> list[ExperimentSpec]:
        return [self._specs[k] for k in sorted(self._specs)]

    def specs_by_id(self) -> dict[str, ExperimentSpec]:
        return dict(self._specs)

    def spec(self, experiment: str) -> ExperimentSpec:
        spec = self._specs.get(experiment)
        if spec is None:
            raise UnknownExperiment(f"experiment {experiment!r} is not known")
        return spec

    def versions(self, experiment: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Every version of the experiment's metric records, in topic order."""
        with self._lock:
            return list(self._versions.get(experiment, ()))

    def records(self, experiment: str) -> list[dict[str, Any]]:
        """The newest records, partials summed: one per (variant, metric)."""
        return list(combine(newest_per_key(self.versions(experiment))).values())

    def decisions(self, experiment: str) -> list[DecisionRecord]:
        with self._lock:
            return list(self._decisions.get(experiment, ()))


class TopicFollower:
    """A thread that reads the experiments, metrics and decisions topics from the start, then follows them.

    ``on_metrics(experiment)`` is called after each polled batch for every experiment whose
    metric records changed (the automatic stop runs there).
    """

    def __init__(self, *, state: ConsoleState, consumer_config: dict[str, Any], experiments_topic: str,
                 metrics_topic: str, decisions_topic: str,
                 on_metrics: Callable[[str], object] | None = None, poll_ms: int = 100) -> None:
        self.state = state
        self._config = consumer_config
        self._topics = {"experiments": experiments_topic, "metrics": metrics_topic, "decisions": decisions_topic}
        self._on_metrics = on_metrics
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once every topic was read to its end
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="console-follower", daemon=True)

    def start(self) -> TopicFollower:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = None
        assigned: list[Any] = []
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
            except Exception as exc:  # noqa: BLE001 - the console must outlive a broker outage
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("console follower: %s", self.last_error)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def _assign(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        assigned = []
        for topic in self._topics.values():
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                self.last_error = f"topic {topic} not found"
                return []
            assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return assigned

    def _poll(self, consumer: Any, assigned: list[Any]) -> None:
        batch = consumer.poll(timeout_ms=self._poll_ms, max_records=5000)
        touched: set[str] = set()
        for partition, records in batch.items():
            for record in records:
                if partition.topic == self._topics["experiments"]:
                    self.state.apply_spec(record.key, record.value)
                elif partition.topic == self._topics["metrics"]:
                    experiment = self.state.apply_metric(record.key, record.value)
                    if experiment is not None:
                        touched.add(experiment)
                else:
                    self.state.apply_decision(record.key, record.value)
        if not self.ready.is_set() and all(_caught_up(consumer, tp) for tp in assigned):
            self.ready.set()
            logger.info("console read its topics to their end: %d experiments", len(self.state.specs()))
        if self._on_metrics is not None:
            for experiment in sorted(touched):
                self._on_metrics(experiment)

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.ready.is_set():
            self.ready.wait(0.1)
        return self.ready.is_set()


def _caught_up(consumer: Any, partition: Any) -> bool:
    highwater = consumer.highwater(partition)
    return highwater is not None and consumer.position(partition) >= highwater
