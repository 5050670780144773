"""The aggregation worker: a plain kafka-python consumer group around ``AggregationStore``.

Deliberately not Faust. Each polled batch is applied and committed to the store
(SQLite, or PostgreSQL when ``TANDEM_POSTGRES_DSN`` is set) together with the next
offset of every partition in it (one transaction); on (re)assignment the process
claims the partitions it received (fencing out their previous owner), loads their
state and seeks every partition to the offset stored with it, so a crash at any
point replays exactly what was not stored, and records below a stored offset are
skipped. Kafka offsets are committed only as a courtesy (lag tools read them); the
database is the truth. Start it K times in one group: each process publishes the
partials of its partitions, and readers sum them (docs/aggregation.md).

What the database holds is then published: dead letters before anything else
is polled, and the metric records that changed. A crash between the database
commit and those sends would lose them, so both are kept in the store's outbox
until the broker has acknowledged them, and every metric record is published
again at start (readers keep the newest per key, so a repeat is harmless).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

from experiments.aggregation import AggregationStore, BatchResult, SourceRecord
from experiments.aggregation.stats import record_key
from experiments.aggregation.store import INPUTS, InputRecord
from experiments.errors import FencedWrite
from infra.kafka.config import consumer_config, producer_config
from infra.kafka.incarnation import check_state_log
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topics import DEAD_LETTERS, EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, EXPOSURES
from infra.metrics import LoopStatus, consumer_lags, counter, partition_lag
from infra.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_ALLOWED_LATENESS_MS = 30 * 60 * 1000
MAX_POLL_RECORDS = 5000
#: Batches between full garbage collections (see ``settle_garbage``).
FULL_COLLECTION_EVERY = 2000
#: Event-time resolution of each user's history: 1 ms keeps every window exact to the millisecond.
DEFAULT_RESOLUTION_MS = 1


@dataclass
class AggregatorStats:
    batches: int = 0
    applied: int = 0
    skipped: int = 0
    dead_letters: int = 0
    metric_records: int = 0
    consumed: dict[str, int] = field(default_factory=dict)  # records polled, by topic
    window_closes: dict[str, int] = field(default_factory=dict)  # by experiment
    late: dict[str, int] = field(default_factory=dict)  # records refused as late, by experiment
    started_at: float = field(default_factory=time.monotonic)
    first_batch_at: float | None = None  # monotonic seconds: when the first data batch arrived
    last_batch_at: float | None = None  # ... and when the last one was committed and published


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}experiments-aggregator"


def database_path(settings: Settings) -> Path:
    return settings.state_dir / "experiments.db"


def store_target(settings: Settings) -> str | Path:
    """Where the state lives: ``TANDEM_POSTGRES_DSN`` if set, else the SQLite file in the state dir."""
    if settings.postgres_dsn is not None:
        return settings.postgres_dsn.get_secret_value()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return database_path(settings)


def open_store(
    settings: Settings,
    *,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
    resolution_ms: int = DEFAULT_RESOLUTION_MS,
    dedupe_span_ms: int | None = None,
    item_sets: bool = True,
    claim_on_demand: bool = True,
) -> AggregationStore:
    topics = {topic.name: settings.topic(topic) for topic in INPUTS}
    return AggregationStore(
        store_target(settings), allowed_lateness_ms=allowed_lateness_ms, topics=topics, resolution_ms=resolution_ms,
        dedupe_span_ms=dedupe_span_ms, item_sets=item_sets, claim_on_demand=claim_on_demand,
    )


def check_store_log(settings: Settings, store: AggregationStore) -> None:
    """Raise ``StaleState`` when ``store`` holds state of another broker log (another incarnation,
    or a log shorter than its stored offsets); else keep the current incarnation with it."""
    where = "the PostgreSQL store" if settings.postgres_dsn is not None else str(database_path(settings))
    current = check_state_log(settings, consumer="the aggregator", state=where, stored=store.incarnation(),
                              stored_offsets=store.all_stored_offsets())
    store.record_incarnation(current.id)


def check_log(settings: Settings) -> None:
    """``check_store_log`` on the aggregator's store, for ``tandem up`` before it starts the workers."""
    store = open_store(settings, claim_on_demand=False)
    try:
        check_store_log(settings, store)
    finally:
        store.close()


class Aggregator:
    """Consume ``events``, ``exposures`` and ``experiments``; publish ``experiment-metrics``."""

    def __init__(
        self,
        *,
        settings: Settings,
        allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
        resolution_ms: int = DEFAULT_RESOLUTION_MS,
        dedupe_span_ms: int | None = None,
        item_sets: bool = True,
        crash_after_commits: int | None = None,
        group: str | None = None,
        publish: bool = True,
        metrics_port: int | None = None,
    ) -> None:
        """``/metrics`` is served on loopback ``metrics_port`` while ``run`` runs (0: any free port,
        None: not served); a taken port is replaced by a free one, logged."""
        self.settings = settings
        self.group = group or group_id(settings)
        # A replay that checks another aggregator's figures reads the same topics but must not write them.
        self.publish = publish
        # Fault injection for the crash tests: SIGKILL itself right after the Nth database
        # commit, before anything of that batch is published or committed to Kafka.
        self._crash_after_commits = crash_after_commits
        self._store_args: dict[str, Any] = {
            "allowed_lateness_ms": allowed_lateness_ms, "resolution_ms": resolution_ms,
            "dedupe_span_ms": dedupe_span_ms, "item_sets": item_sets,
        }
        # The group decides which partitions are this process's: claim those, never on demand.
        self.store = open_store(settings, claim_on_demand=False, **self._store_args)
        self.stats = AggregatorStats()
        self.metrics = LoopStatus("aggregator", aggregator_families, port=metrics_port)
        self._stop = threading.Event()
        self._metrics_topic = settings.topic(EXPERIMENT_METRICS)
        self._dead_letter_topic = settings.topic(DEAD_LETTERS)
        self._inputs = [settings.topic(EVENTS), settings.topic(EXPOSURES)]
        self._specs_topic = settings.topic(EXPERIMENTS)

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, idle_exit_s: float | None = None) -> AggregatorStats:
        """Consume until ``stop()``; or, for scripts and tests, until every assigned partition has
        been at its end for ``idle_exit_s``."""
        from kafka import KafkaConsumer

        store = self.store
        try:
            check_store_log(self.settings, store)
        except BaseException:
            self.store.close()
            raise
        consumer = KafkaConsumer(
            **consumer_config(self.settings, group_id=self.group, max_poll_records=MAX_POLL_RECORDS)
        )
        publisher = KafkaPublisher(config=producer_config(self.settings), topic=self._metrics_topic)

        reassigned = _subscribe(consumer, self._inputs)
        specs = SpecFeed(self.settings, self._specs_topic, start=store.stored_offsets())
        self._reassigned = reassigned
        self.metrics.start()
        try:
            self._publish_outbox(publisher)
            self._account(store.apply_batch(specs.read_to_end()))
            last_record = time.monotonic()
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=500, max_records=MAX_POLL_RECORDS)
                self.metrics.offer(lambda: self._figures(consumer))
                if reassigned.is_set():
                    # What this poll fetched may start anywhere: drop it, claim what is ours now and
                    # seek to the offsets stored with its state.
                    reassigned.clear()
                    self._seek_to_stored_offsets(consumer)
                    self._publish_outbox(publisher)
                    self._publish_all_metrics(publisher)
                    continue
                records = self._records(batch)
                if not records:
                    if not self._caught_up(consumer):
                        last_record = time.monotonic()
                        continue
                    self._publish_watermarks(specs=specs, publisher=publisher)
                    if idle_exit_s is not None and time.monotonic() - last_record > idle_exit_s:
                        break
                    continue
                last_record = time.monotonic()
                self._apply(records, received_at=last_record, specs=specs, consumer=consumer, publisher=publisher)
                settle_garbage(self.stats.batches)
        finally:
            self.metrics.close()
            gc.unfreeze()
            specs.close()
            consumer.close(autocommit=False)
            publisher.close()
            self.store.close()
        return self.stats

    def _records(self, batch: Mapping[Any, list[Any]]) -> list[InputRecord]:
        """A poll's records (kafka-python's own, not copied), counted by topic."""
        consumed = self.stats.consumed
        for tp, partition_records in batch.items():
            consumed[tp.topic] = consumed.get(tp.topic, 0) + len(partition_records)
        return [r for partition_records in batch.values() for r in partition_records]

    def _figures(self, consumer: Any) -> dict[str, Any]:
        """What ``/metrics`` shows (``aggregator_families``): a copy of the counters, the lag, the experiments."""
        return {**asdict(self.stats), "lag": consumer_lags(consumer), "experiments": self.store.experiments()}

    def _apply(self, records: list[InputRecord], *, received_at: float, specs: SpecFeed, consumer: Any,
               publisher: KafkaPublisher) -> None:
        """One polled batch: stored with its offsets, its metric records published, offsets committed."""
        # Serving publishes a spec before it exposes anyone to it, so reading the specs
        # to their end now covers every experiment this batch can name.
        try:
            self._account(self.store.apply_batch([*specs.read_to_end(), *records]))
        except FencedWrite as exc:
            self._reload(exc, specs)
            return
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = received_at
        if self._crash_after_commits is not None and self.stats.batches >= self._crash_after_commits:
            os.kill(os.getpid(), signal.SIGKILL)
        self._publish_outbox(publisher)
        self._commit_courtesy(consumer)
        self.stats.last_batch_at = time.monotonic()

    def _publish_watermarks(self, *, specs: SpecFeed, publisher: KafkaPublisher) -> None:
        """Read to the end: the records a batch did not change get their partition's newest watermark."""
        try:
            if self.store.publish_watermarks():
                self._publish_outbox(publisher)
        except FencedWrite as exc:
            self._reload(exc, specs)

    def _reload(self, exc: FencedWrite, specs: SpecFeed) -> None:
        """Another process owns some of these partitions now: forget every state held here and
        wait for the group's new assignment (the next poll delivers it)."""
        logger.warning("%s; reloading from the store", exc)
        self.store.close()
        self.store = open_store(self.settings, claim_on_demand=False, **self._store_args)
        specs.restart(self.store.stored_offsets())
        self._reassigned.set()

    @staticmethod
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

    def _seek_to_stored_offsets(self, consumer: Any) -> None:
        assigned = list(consumer.assignment())
        self.store.claim({tp.partition for tp in assigned})
        stored = self.store.stored_offsets()
        for partition in assigned:
            offset = stored.get((partition.topic, partition.partition))
            if offset is None:
                consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, offset)
        # Every assigned input partition holds the watermark back until it has delivered a record.
        self.store.declare_partitions((tp.topic, tp.partition) for tp in assigned)
        logger.info("assigned %d partitions, sought to the offsets stored with the state", len(assigned))

    def _account(self, result: BatchResult) -> None:
        self.stats.batches += 1
        self.stats.applied += result.applied
        self.stats.skipped += result.skipped
        self.stats.dead_letters += len(result.dead_letters)
        self.stats.metric_records += len(result.metric_records)
        for figure, counts in ((self.stats.window_closes, result.window_closes), (self.stats.late, result.late)):
            for experiment, count in counts.items():
                figure[experiment] = figure.get(experiment, 0) + count

    def _publish_outbox(self, publisher: KafkaPublisher) -> None:
        """Send what the store committed but the broker has not acknowledged, then clear it."""
        pending = self.store.outbox()
        if not pending:
            return
        for item in pending if self.publish else ():
            topic = self._dead_letter_topic if item.kind == "dead_letter" else self._metrics_topic
            publisher.publish_bytes(item.key.encode(), item.payload.encode(), topic=topic)
        publisher.flush()
        self.store.clear_outbox([item.outbox_id for item in pending])

    def _publish_all_metrics(self, publisher: KafkaPublisher) -> None:
        if not self.publish:
            return
        for experiment in self.store.experiments():
            for record in self.store.partial_records(experiment):
                key = record_key(record["experiment"], record["variant"], record["metric"], record["partition"])
                publisher.publish_bytes(key.encode(), json.dumps(record).encode())
        publisher.flush()

    @staticmethod
    def _commit_courtesy(consumer: Any) -> None:
        from kafka.errors import KafkaError

        try:
            consumer.commit()
        except KafkaError as exc:  # the database holds the truth; a failed courtesy commit costs nothing
            logger.debug("courtesy commit failed: %s", exc)


def settle_garbage(batches: int) -> None:
    """Keep the cyclic garbage collector off the state, after the ``batches``-th batch.

    The state is millions of small containers that live for the lookback; each full
    collection walked all of them, and collections came the more often the more records
    came (a third of the CPU of a batch, measured). After each batch the young
    generations are collected (the batch's own cycles: exceptions of dead letters) and
    what survived is frozen: never walked again, still freed by reference counting, as the
    state is acyclic. A full collection over everything, now and then, bounds what a
    frozen cycle could hold."""
    if batches % FULL_COLLECTION_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


def aggregator_families(status: Mapping[str, Any]) -> list[Metric]:
    """The aggregator's figures, from the status its consumer loop last published (``Aggregator.status``)."""

    def per_experiment(figure: str) -> dict[str, int]:  # every known experiment, 0 until it counts
        return dict.fromkeys(status.get("experiments", ()), 0) | status.get(figure, {})

    return [
        counter("tandem_aggregator_records", "records consumed, by topic", status.get("consumed", {}), "topic"),
        counter("tandem_aggregator_records_applied", "records applied to the state", status.get("applied", 0)),
        counter("tandem_aggregator_records_skipped", "records below the offset stored with the state (replayed)",
                status.get("skipped", 0)),
        counter("tandem_aggregator_batches", "batches committed to the store", status.get("batches", 0)),
        counter("tandem_aggregator_window_closes", "users' metric windows closed by the watermark, by experiment",
                per_experiment("window_closes"), "experiment"),
        counter("tandem_aggregator_late_records", "records refused as late, by experiment", per_experiment("late"),
                "experiment"),
        counter("tandem_aggregator_dead_letters", "records sent to the dead-letter topic",
                status.get("dead_letters", 0)),
        counter("tandem_aggregator_metric_records", "experiment-metrics records that changed",
                status.get("metric_records", 0)),
        partition_lag("tandem_aggregator_consumer_lag", "records of the events and exposures topics not read yet",
                      status.get("lag", {})),
    ]


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


class SpecFeed:
    """The ``experiments`` topic read without a group, from the offsets stored with the state."""

    def __init__(self, settings: Settings, topic: str, *, start: dict[tuple[str, int], int]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        # The feed is read to its end before every batch: a fetch held for data that does not
        # come cost ~50 ms of each batch, so the broker may hold it 1 ms (0 made the embedded
        # broker answer without the high-watermark, and the feed never saw its end).
        self._consumer = KafkaConsumer(**consumer_config(settings, group_id=None, fetch_max_wait_ms=1))
        partitions = self._consumer.partitions_for_topic(topic) or {0}
        self._assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        self._consumer.assign(self._assigned)
        self._topic = topic
        self.restart(start)

    def restart(self, start: dict[tuple[str, int], int]) -> None:
        """Read on from these stored offsets (the beginning where none is stored)."""
        for tp in self._assigned:
            offset = start.get((self._topic, tp.partition))
            if offset is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)

    def read_to_end(self, timeout_s: float = 10.0) -> list[SourceRecord]:
        """Every record up to the end offsets the broker states now. Not the high-watermark of the
        consumer's last fetch: that may predate a spec acknowledged since, and the exposures to it in
        the batch that follows were dead-lettered as of an unknown experiment (blast radius, reverse)."""
        ends = self._consumer.end_offsets(self._assigned)
        records: list[SourceRecord] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._consumer.position(tp) >= ends[tp] for tp in self._assigned):
                return records
            for batch in self._consumer.poll(timeout_ms=5).values():
                records.extend(SourceRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in batch)
        raise TimeoutError(f"the experiments topic was not read to its end within {timeout_s} s")

    def close(self) -> None:
        self._consumer.close()
