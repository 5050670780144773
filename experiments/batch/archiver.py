"""The archiver: a kafka-python consumer group of its own writing the archive (``tandem archive run``).

It reads ``events``, ``exposures`` and ``decisions`` and writes each partition's polled records
as one batch of Parquet files (``experiments/batch/archive.py``). The dataset is the truth about
what is archived, not Kafka's committed offsets: on every assignment each partition is sought
to what the dataset holds (``last + 1`` of its newest complete batch; an unfinished batch is
deleted and written again), so a crash at any point leaves neither a duplicate nor a gap.
Kafka offsets are committed after the files exist, as a courtesy for lag tools.

Records that fail validation are not archived: they go to ``dead-letters`` with the reason
(stage ``experiments.archive``) before the batch holding them is written, so a crash repeats
a dead letter (same ``dead_letter_id``) but never loses one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.core import Metric

from experiments.batch.archive import Archive
from experiments.batch.decoding import decode_partition_batch
from infra.kafka.config import consumer_config, producer_config
from infra.kafka.incarnation import check_state_log
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topics import DEAD_LETTERS, DECISIONS, EVENTS, EXPOSURES, Topic
from infra.metrics import LoopStatus, consumer_lags, counter, gauge, partition_lag
from infra.settings import Settings
from streams.events import dead_letter, encode_dead_letter

logger = logging.getLogger(__name__)

STAGE = "experiments.archive"
ARCHIVED: tuple[Topic, ...] = (EVENTS, EXPOSURES, DECISIONS)
MAX_POLL_RECORDS = 5000


@dataclass
class ArchiverStats:
    records: int = 0
    dead_letters: int = 0
    batches: int = 0
    files: int = 0
    consumed: dict[str, int] = field(default_factory=dict)  # records polled, by topic
    archived: dict[str, int] = field(default_factory=dict)  # records in files written, by topic
    pending: int = 0  # records polled and not in a file yet
    started_at: float = field(default_factory=time.monotonic)
    first_record_at: float | None = None  # monotonic seconds: the first record polled
    last_flush_at: float | None = None  # ... and the end of the last flush


@dataclass
class _Pending:
    """One partition's records since its last flush: offsets contiguous from the resume point."""

    records: list[tuple[int, bytes | None, bytes | None]] = field(default_factory=list)
    size: int = 0


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}archiver"


def default_archive_url(settings: Settings) -> str:
    """``TANDEM_ARCHIVE_URL``, else ``<state dir>/archive``."""
    return settings.archive


def check_archive_log(settings: Settings, archive: Archive) -> None:
    """Raise ``StaleState`` when the archive's offsets belong to another broker log (resuming at
    them would skip the new log's first records); else record the current incarnation with it."""
    resume = {(settings.topic(topic), partition): offset for topic in ARCHIVED
              for partition, offset in archive.resume_offsets(topic.name).items()}
    stored = archive.incarnation()
    current = check_state_log(settings, consumer="the archiver", state=f"archive {archive.url}", stored=stored,
                              stored_offsets=resume)
    if stored is None:
        archive.record_incarnation(current.id)


class Archiver:
    """Consume the archived topics in group ``<prefix>archiver``; write Parquet batches."""

    def __init__(
        self,
        *,
        settings: Settings,
        archive_url: str | None = None,
        max_records: int = 200_000,
        max_bytes: int = 64 * 1024 * 1024,
        flush_interval_s: float = 30.0,
        group: str | None = None,
        crash_after_batches: int | None = None,
        metrics_port: int | None = None,
    ) -> None:
        """``/metrics`` is served on loopback ``metrics_port`` while ``run`` runs (0: any free port,
        None: not served); a taken port is replaced by a free one, logged."""
        self.settings = settings
        # Fault injection for the crash tests: SIGKILL itself right after the Nth batch's files
        # are written, before the next batch and before the offset commit.
        self._crash_after_batches = crash_after_batches
        self.archive = Archive(archive_url or default_archive_url(settings))
        self.group = group or group_id(settings)
        # A batch is bounded in records and raw bytes, so files are bounded in size.
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.flush_interval_s = flush_interval_s
        self.stats = ArchiverStats()
        self.metrics = LoopStatus("archiver", archiver_families, port=metrics_port)
        self._roles = {settings.topic(topic): topic.name for topic in ARCHIVED}
        self._dead_letter_topic = settings.topic(DEAD_LETTERS)
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._oldest_pending: float | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, idle_exit_s: float | None = None) -> ArchiverStats:
        """Archive until ``stop()``; or, for scripts and tests, until every assigned partition has
        been at its end, with nothing pending, for ``idle_exit_s``."""
        from kafka import KafkaConsumer

        check_archive_log(self.settings, self.archive)
        consumer = KafkaConsumer(
            **consumer_config(self.settings, group_id=self.group, max_poll_records=MAX_POLL_RECORDS)
        )
        publisher = KafkaPublisher(config=producer_config(self.settings), topic=self._dead_letter_topic)
        reassigned = _subscribe(consumer, list(self._roles))
        self.metrics.start()
        try:
            last_record = time.monotonic()
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=200, max_records=MAX_POLL_RECORDS)
                self.metrics.offer(lambda: {**asdict(self.stats), "lag": consumer_lags(consumer)})
                if reassigned.is_set():
                    # What this poll fetched may start anywhere: drop it and everything pending,
                    # and seek every partition to what the dataset holds.
                    reassigned.clear()
                    self._pending.clear()
                    self.stats.pending = 0
                    self._oldest_pending = None
                    self._seek_to_archived(consumer)
                    continue
                now = time.monotonic()
                self._take(batch, now)
                if batch:
                    last_record = now
                    self._oldest_pending = self._oldest_pending or now
                caught_up = not batch and _caught_up(consumer)
                if self._due(now) or (caught_up and self._pending):
                    self._flush(publisher, consumer)
                if not batch and not caught_up:
                    last_record = now
                elif caught_up and idle_exit_s is not None and now - last_record > idle_exit_s:
                    break
        finally:
            self.metrics.close()
            consumer.close(autocommit=False)
            publisher.close()
        return self.stats

    def _take(self, batch: Mapping[Any, list[Any]], now: float) -> None:
        """Add a poll's records to their partitions' pending batches, counted by topic."""
        consumed = self.stats.consumed
        for tp, records in batch.items():
            pending = self._pending.setdefault((tp.topic, tp.partition), _Pending())
            for r in records:
                pending.records.append((r.offset, r.key, r.value))
                pending.size += len(r.value or b"")
            self.stats.records += len(records)
            self.stats.pending += len(records)
            consumed[tp.topic] = consumed.get(tp.topic, 0) + len(records)
            self.stats.first_record_at = self.stats.first_record_at or now

    def _due(self, now: float) -> bool:
        if not self._pending:
            return False
        records = sum(len(p.records) for p in self._pending.values())
        size = sum(p.size for p in self._pending.values())
        waited = now - (self._oldest_pending or now)
        return records >= self.max_records or size >= self.max_bytes or waited >= self.flush_interval_s

    def _seek_to_archived(self, consumer: Any) -> None:
        assigned = list(consumer.assignment())
        resume: dict[str, dict[int, int]] = {}
        for role in {self._roles[tp.topic] for tp in assigned}:
            resume[role] = self.archive.resume_offsets(role, repair=True)
        for tp in assigned:
            offset = resume[self._roles[tp.topic]].get(tp.partition)
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        logger.info("assigned %d partitions, sought to what the archive holds", len(assigned))

    def _flush(self, publisher: KafkaPublisher, consumer: Any) -> None:
        """Dead letters first (acknowledged), then each partition's batch of files, then the
        courtesy commit."""
        batches = []
        letters = 0
        for (topic, partition), pending in self._pending.items():
            if not pending.records:
                continue
            role = self._roles[topic]
            table, rejected = decode_partition_batch(role, partition, pending.records)
            for bad in rejected:
                letter = dead_letter(raw_value=bad.value, raw_key=bad.key, source_topic=topic, partition=partition,
                                     offset=bad.offset, error=bad.error, stage=STAGE)
                publisher.publish_bytes(topic.encode(), encode_dead_letter(letter))
                letters += 1
            first, last = pending.records[0][0], pending.records[-1][0]
            batches.append((topic, role, partition, first, last, table))
        if letters:
            publisher.flush()
            self.stats.dead_letters += letters
        archived = self.stats.archived
        for topic, role, partition, first, last, table in batches:
            # A batch of dead letters only leaves no file: a restart repeats its letters (same ids).
            self.stats.files += len(self.archive.write_batch(role, partition, first, last, table))
            self.stats.batches += 1
            archived[topic] = archived.get(topic, 0) + table.num_rows
            if self._crash_after_batches is not None and self.stats.batches >= self._crash_after_batches:
                os.kill(os.getpid(), signal.SIGKILL)
        self._pending.clear()
        self.stats.pending = 0
        self._oldest_pending = None
        self.stats.last_flush_at = time.monotonic()
        _commit_courtesy(consumer)


def archiver_families(status: Mapping[str, Any]) -> list[Metric]:
    """The archiver's figures, from the status its consumer loop last published (``Archiver.status``)."""
    return [
        counter("tandem_archiver_records", "records consumed, by topic", status.get("consumed", {}), "topic"),
        counter("tandem_archiver_records_archived", "records in Parquet files written, by topic",
                status.get("archived", {}), "topic"),
        counter("tandem_archiver_files_written", "Parquet files written", status.get("files", 0)),
        counter("tandem_archiver_batches", "partition batches written", status.get("batches", 0)),
        counter("tandem_archiver_dead_letters", "records sent to the dead-letter topic",
                status.get("dead_letters", 0)),
        gauge("tandem_archiver_records_pending", "records consumed and not in a file yet", status.get("pending", 0)),
        partition_lag("tandem_archiver_consumer_lag", "records of the archived topics not read yet",
                      status.get("lag", {})),
    ]


def _caught_up(consumer: Any) -> bool:
    """Partitions assigned, and each at its fetch high-watermark (never ``end_offsets`` here)."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    for partition in assigned:
        highwater = consumer.highwater(partition)
        if highwater is None or consumer.position(partition) < highwater:
            return False
    return True


def _commit_courtesy(consumer: Any) -> None:
    from kafka.errors import KafkaError

    try:
        consumer.commit()
    except KafkaError as exc:  # the dataset holds the truth; a failed courtesy commit costs nothing
        logger.debug("courtesy commit failed: %s", exc)


def _subscribe(consumer: Any, topics: list[str]) -> threading.Event:
    """Subscribe ``consumer``; the event is set whenever the group moves partitions."""
    from kafka import ConsumerRebalanceListener

    reassigned = threading.Event()

    class NoteReassignment(ConsumerRebalanceListener):
        # kafka-python calls this from its network thread: only flag it, the loop does the work.
        def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
            reassigned.set()

        def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
            reassigned.set()

    consumer.subscribe(topics, listener=NoteReassignment())
    return reassigned
