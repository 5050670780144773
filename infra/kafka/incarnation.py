"""Which log a consumer's stored state was built from: the incarnation marker.

The embedded broker keeps its log in memory, so a restart hands every consumer an empty log
whose offsets start again at 0. A consumer that stored its state with the offsets it consumed
would then either skip the new records (its stored offsets are past the new log's end) or, once
the new log has grown past them, fold a second run into the first one's state, silently.

So the log carries an identity: the first record of the one-partition ``incarnation`` topic, a
random id written by whichever process finds the topic empty (two writers at once both read
back the record at offset 0, so they agree). Each stateful consumer stores that id with its
state and, before it consumes anything, ``check_incarnation`` compares the two: another id means
the state belongs to a log that no longer exists, and the consumer stops with ``StaleState``,
its state untouched (docs/operations.md says how to recover). ``check_offsets`` is the same
guard from the other side, for any broker: a stored offset past the partition's end.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import StaleState
from infra.kafka.config import consumer_config, producer_config
from infra.settings import Settings

logger = logging.getLogger(__name__)

RECOVERY = "docs/operations.md, 'After a broker restart'"
MARKER_KEY = b"incarnation"
READ_TIMEOUT_S = 20.0
#: The high-watermark comes with any fetch response, so the probe asks for as little as a broker sends
#: (one record batch per fetch): at the default sizes each probe parsed megabytes from offset 0 (0.6 s
#: of CPU for 200,000 small records, 0.015 s so), and a restart on a busy host ran out of time.
PROBE_FETCH = {"max_partition_fetch_bytes": 1, "fetch_max_bytes": 1}


def marker_record(incarnation: str, created_at_ms: int) -> dict[str, object]:
    """The value of the incarnation topic's record (JSON)."""
    return {"incarnation": incarnation, "created_at_ms": created_at_ms}


@dataclass(frozen=True)
class Incarnation:
    """The log's identity and when it was first written (broker time is not used: ours)."""

    id: str
    created_at_ms: int


def current_incarnation(settings: Settings, *, timeout_s: float = READ_TIMEOUT_S) -> Incarnation:
    """The identity of the log behind ``settings``: the incarnation topic's first record, written
    first if the topic is empty (the topic is created if missing)."""
    from infra.kafka.topics import INCARNATION, apply_topics

    apply_topics(settings, (INCARNATION,))
    topic = settings.topic(INCARNATION)
    found = _first_record(settings, topic, timeout_s=timeout_s)
    if found is None:
        from kafka import KafkaProducer

        producer = KafkaProducer(**producer_config(settings))
        try:
            value = marker_record(uuid.uuid4().hex, int(time.time() * 1000))
            producer.send(topic, key=MARKER_KEY, value=json.dumps(value).encode(), partition=0).get(timeout_s)
        finally:
            producer.close()
        found = _first_record(settings, topic, timeout_s=timeout_s)
        if found is None:
            raise StaleState(f"{topic}[0]: the incarnation marker written was not read back within {timeout_s} s")
    return found


def _first_record(settings: Settings, topic: str, *, timeout_s: float) -> Incarnation | None:
    """The record at offset 0 of ``topic`` partition 0, or None when the partition is empty."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_config(settings, group_id=None))
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=200, max_records=1).get(partition, []):
                return _decode(topic, record.value)
            highwater = consumer.highwater(partition)
            if highwater == 0:  # fetched, and the broker says the partition holds nothing
                return None
        raise TimeoutError(f"{topic}[0] was not read within {timeout_s} s")
    finally:
        consumer.close()


def _decode(topic: str, value: bytes | None) -> Incarnation:
    try:
        data = json.loads(value or b"")
        return Incarnation(id=str(data["incarnation"]), created_at_ms=int(data["created_at_ms"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StaleState(f"{topic}[0]: the incarnation marker is not readable ({exc}); "
                         f"the topic belongs to tandem alone") from exc


def check_incarnation(*, consumer: str, state: str, stored: str | None, current: Incarnation,
                      stored_offsets: Mapping[tuple[str, int], int] | None = None) -> None:
    """Raise ``StaleState`` when ``stored`` (the id kept with ``consumer``'s state at ``state``) is
    another log's; ``stored_offsets`` make the message say what the state had consumed."""
    if stored is None or stored == current.id:
        return
    consumed = ""
    if stored_offsets:
        shown = sorted(stored_offsets.items())[:6]
        consumed = "; it had consumed " + ", ".join(f"{t}[{p}] up to offset {o}" for (t, p), o in shown)
        if len(stored_offsets) > len(shown):
            consumed += f" and {len(stored_offsets) - len(shown)} more partitions"
    raise StaleState(
        f"{consumer}: the state at {state} was built from broker log {stored}, but the broker now serves "
        f"log {current.id} (a restarted broker with an empty log, or another cluster){consumed}. "
        f"Nothing was consumed and the state is kept; see {RECOVERY}."
    )


def check_offsets(*, consumer: str, state: str, stored: Mapping[tuple[str, int], int],
                  log_ends: Mapping[tuple[str, int], int]) -> None:
    """Raise ``StaleState`` when a stored next offset lies past its partition's end: that log is
    shorter than the one the state consumed."""
    behind = [(tp, offset, log_ends[tp]) for tp, offset in sorted(stored.items())
              if tp in log_ends and offset > log_ends[tp]]
    if not behind:
        return
    detail = ", ".join(f"{t}[{p}] stored offset {o}, the log ends at {end}" for (t, p), o, end in behind[:6])
    raise StaleState(
        f"{consumer}: the log is shorter than the state at {state} consumed ({detail}): the broker lost "
        f"its log (a restart of the embedded broker) or the topic was recreated. Nothing was consumed and "
        f"the state is kept; see {RECOVERY}."
    )


def check_state_log(settings: Settings, *, consumer: str, state: str, stored: str | None,
                    stored_offsets: Mapping[tuple[str, int], int]) -> Incarnation:
    """Both checks for a consumer that keeps offsets with its state: ``stored`` (its incarnation) is
    this log's, and no stored offset lies past its partition's end. The current incarnation."""
    from kafka import KafkaConsumer, TopicPartition

    current = current_incarnation(settings)
    check_incarnation(consumer=consumer, state=state, stored=stored, current=current, stored_offsets=stored_offsets)
    if stored_offsets:
        probe = KafkaConsumer(**consumer_config(settings, group_id=None, **PROBE_FETCH))
        try:
            ends = log_ends(probe, [TopicPartition(t, p) for t, p in sorted(stored_offsets)])
        finally:
            probe.close()
        check_offsets(consumer=consumer, state=state, stored=stored_offsets, log_ends=ends)
    return current


class MarkerFile:
    """The incarnation kept with state that lives in files (a Faust data dir, the archive)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str | None:
        try:
            return str(json.loads(self.path.read_text())["incarnation"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StaleState(f"{self.path}: unreadable incarnation marker ({exc})") from exc

    def write(self, incarnation: Incarnation) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(marker_record(incarnation.id, incarnation.created_at_ms)))
        tmp.replace(self.path)


def guard_state_dir(settings: Settings, *, consumer: str, marker: Path, has_state: bool) -> Incarnation:
    """The guard for a consumer whose state lives in files: refuse another log's state; else
    record the current incarnation beside it (state from before markers existed is adopted)."""
    current = current_incarnation(settings)
    file = MarkerFile(marker)
    stored = file.read()
    check_incarnation(consumer=consumer, state=str(marker.parent), stored=stored, current=current)
    if stored is None:
        if has_state:
            logger.warning("%s: state at %s has no incarnation marker; adopting broker log %s",
                           consumer, marker.parent, current.id)
        file.write(current)
    return current


def log_ends(consumer: Any, partitions: list[Any], *, timeout_s: float = READ_TIMEOUT_S) -> dict[tuple[str, int], int]:
    """Each partition's fetch high-watermark (``end_offsets`` is wrong on the embedded broker), by
    fetching from offset 0 with a group-less kafka-python ``consumer``; nothing is kept."""
    consumer.assign(partitions)
    for partition in partitions:
        consumer.seek(partition, 0)
    ends: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < len(partitions):
        consumer.poll(timeout_ms=200, max_records=1)
        for partition in partitions:
            highwater = consumer.highwater(partition)
            if highwater is not None:
                ends[(partition.topic, partition.partition)] = highwater
        if time.monotonic() > deadline:
            missing = [f"{p.topic}[{p.partition}]" for p in partitions if (p.topic, p.partition) not in ends]
            raise TimeoutError(f"no high-watermark within {timeout_s} s for {', '.join(missing)}")
    return ends
