"""The aggregation store: per-partition state and consumed offsets committed in one transaction.

The state of each input partition lives in memory (one ``AggregationState`` per partition
number: ``events`` and ``exposures`` are co-partitioned by user) and is written through to
SQLite or PostgreSQL once per batch, together with the next offset of every partition the
batch touched. After a crash, reopen the database, seek each partition to
``stored_offsets()`` and replay: records below a stored offset are skipped, so nothing is
applied twice. A process owns a partition from ``claim`` (which bumps the partition's
generation) until another process claims it; a commit that finds another generation is
refused (``FencedWrite``) and writes nothing.

>>> store = AggregationStore(":memory:", allowed_lateness_ms=0)
>>> result = store.apply_batch([SourceRecord("tandem.events", 0, 0, b"u1", b"not json")])
>>> result.dead_letters[0].error[:30], store.stored_offsets()
('ListeningEvent: malformed JSON', {('tandem.events', 0): 1})
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from experiments.aggregation import changelog
from experiments.aggregation import schema as sql
from experiments.aggregation.backends import connect
from experiments.aggregation.foldable import MAX_PRE_PERIOD_MS, check_foldable
from experiments.aggregation.state import AggregationState
from experiments.aggregation.stats import merge_partials, record_key, with_watermark
from experiments.errors import FencedWrite, InvalidSpec, StoreError
from experiments.spec import ExperimentSpec, spec_from_json, spec_to_json
from experiments.surfaces import check_against_surfaces, load_surfaces
from infra.kafka.topics import EVENTS, EXPERIMENTS, EXPOSURES
from streams.errors import InvalidRecord
from streams.events import DeadLetter, Exposure, ListeningEvent, dead_letter, decode

logger = logging.getLogger(__name__)

STAGE = "experiments.aggregation"
INPUTS = (EVENTS, EXPOSURES, EXPERIMENTS)
#: Every record carries its partition's watermark. Republishing every live experiment's records
#: whenever a watermark moved made each batch cost grow with the number of live experiments; the
#: records of experiments a batch did not change are republished once the watermark has moved this
#: much event time, and when the input is read to its end (``publish_watermarks``).
WATERMARK_REPUBLISH_MS = 60_000


def default_topics(prefix: str = "tandem.") -> dict[str, str]:
    """Each input's role (its topic's name) and its name on the broker: ``{"events": "tandem.events", ...}``."""
    return {topic.name: f"{prefix}{topic.name}" for topic in INPUTS}


class SourceRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class InputRecord(Protocol):
    """What ``apply_batch`` reads of a record: a ``SourceRecord``, or a kafka-python
    ``ConsumerRecord`` as polled (the aggregator hands those over without a copy)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: ``experiment-metrics`` records whose content changed (publish with key ``record_id``'s key part).
    metric_records: list[dict[str, Any]] = field(default_factory=list)
    applied: int = 0
    skipped: int = 0
    #: Per experiment: user metric windows the watermark closed, and records refused as late
    #: (with what commits outside a batch wrote since the last one).
    window_closes: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)


class OutboxItem(NamedTuple):
    """A record committed with the state and not yet acknowledged by the broker."""

    outbox_id: str
    kind: str  # "dead_letter" or "metric"
    key: str  # the Kafka record key: the source topic, or experiment/variant/metric
    payload: str  # the record as JSON


class AggregationStore:
    def __init__(
        self,
        path: str | Path,
        *,
        allowed_lateness_ms: int,
        topics: Mapping[str, str] | None = None,
        min_retention_ms: int = 0,
        resolution_ms: int = 1,
        dedupe_span_ms: int | None = None,
        item_sets: bool = True,
        owner: str | None = None,
        claim_on_demand: bool = True,
        max_pre_period_ms: int = MAX_PRE_PERIOD_MS,
        watermark_republish_ms: int = WATERMARK_REPUBLISH_MS,
    ) -> None:
        topics = dict(topics or default_topics())
        self._watermark_republish_ms = watermark_republish_ms
        roles = [topic.name for topic in INPUTS]
        if sorted(topics) != sorted(roles):
            raise ValueError(f"topics: needs exactly the keys {', '.join(roles)}")
        self._roles = {name: role for role, name in topics.items()}
        # A lone store (tests, replays) owns a partition when its first record comes; the
        # aggregator claims what the group assigns and leaves other partitions alone.
        self._claim_on_demand = claim_on_demand
        # a spec asking for a longer pre-period is a dead letter; its last good version runs on
        self._max_pre_period_ms = max_pre_period_ms
        self._surfaces = load_surfaces()
        self._state_args: dict[str, Any] = {
            "allowed_lateness_ms": allowed_lateness_ms, "min_retention_ms": min_retention_ms,
            "resolution_ms": resolution_ms, "dedupe_span_ms": dedupe_span_ms, "item_sets": item_sets,
        }
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conn, self._dialect = connect(path)
        self._db_errors = self._dialect.errors
        self._create_schema()
        self._broken = False
        self._emitted: dict[str, dict[str, Any]] = {}
        self._offsets: dict[tuple[str, int], int] = {}
        self.specs: dict[str, ExperimentSpec] = {}
        self.states: dict[int, AggregationState] = {}  # owned partitions
        self._generations: dict[int, int] = {}
        # per owned partition: the next changelog seq, and the entries written since (and with) its snapshot
        self._next_seq: dict[int, int] = {}
        self._log_entries: dict[int, int] = {}
        self._snapshot_entries: dict[int, int] = {}
        self._published_watermarks: dict[int, int | None] = {}  # per partition, as in its last records
        self._pending_specs: list[ExperimentSpec] = []
        self._window_closes: Counter[str] = Counter()  # since the last batch's result, from the journals
        self._late: Counter[str] = Counter()
        q = self._conn.execute
        for (raw,) in q("SELECT spec_json FROM agg_specs").fetchall():
            spec = spec_from_json(raw)
            self.specs[spec.id] = spec
        specs_topic = topics[EXPERIMENTS.name]
        self._offsets.update(
            ((t, p), o) for t, p, o in q(
                "SELECT topic, partition_id, next_offset FROM agg_offsets WHERE topic = ?", (specs_topic,)
            ).fetchall()
        )
        # A scratch state checks spec changes even before any partition is owned.
        self._spec_check = AggregationState(**self._state_args)
        for spec in self.specs.values():
            self._spec_check.register_spec(spec)
        self._spec_check.take_journal()
        if claim_on_demand:  # a lone store owns every partition it has ever seen
            for (part,) in q("SELECT part FROM agg_parts ORDER BY part").fetchall():
                self._claim(part)

    def _create_schema(self) -> None:
        for table in sql.FORMER_TABLES:
            try:
                self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608 (fixed names)
            except self._db_errors:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                continue
            raise StoreError(
                f"{table}: this database holds aggregation state in the former row-per-entry layout; "
                "start from a fresh database (the state is rebuilt by replaying the topics)"
            )
        if self._dialect.name == "postgresql":
            # two processes creating the tables at once would collide on the catalog
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(7315)")
            self._conn.executescript(sql.SCHEMA)
            self._conn.execute("COMMIT")
        else:
            self._conn.executescript(sql.SCHEMA)

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AggregationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- ownership ---------------------------------------------------------------------
    def claim(self, parts: Iterable[int]) -> None:
        """Own these partitions from now on: bump their generation (fencing out any earlier owner)
        and load their state and offsets as committed; forget every other partition."""
        self._check()
        wanted = sorted(set(parts))
        for part in [p for p in self.states if p not in wanted]:
            self._drop(part)
        for part in wanted:
            if part not in self.states:
                self._claim(part)

    def _drop(self, part: int) -> None:
        del self.states[part]
        self._generations.pop(part, None)
        for per_part in (self._next_seq, self._log_entries, self._snapshot_entries, self._published_watermarks):
            per_part.pop(part, None)
        self._offsets = {tp: o for tp, o in self._offsets.items() if self._part_of(tp) != part}
        self._emitted = {k: r for k, r in self._emitted.items() if r.get("partition") != part}

    def _part_of(self, tp: tuple[str, int]) -> int:
        return sql.SHARED if self._roles.get(tp[0]) == EXPERIMENTS.name else tp[1]

    def _claim(self, part: int) -> AggregationState:
        q = self._conn.execute
        try:
            q(self._dialect.begin)
            (generation,) = q(sql.CLAIM_PART, (part, self.owner)).fetchone()
            state = self._load(part)
            offsets = q(
                "SELECT topic, partition_id, next_offset FROM agg_offsets WHERE part = ?", (part,)
            ).fetchall()
            q("COMMIT")
        except self._db_errors as exc:
            self._rollback()
            raise StoreError(f"claiming partition {part} failed: {exc}") from exc
        self._generations[part] = generation
        self._offsets.update(((t, p), o) for t, p, o in offsets)
        self.states[part] = state
        logger.info("partition %d claimed by %s (generation %d)", part, self.owner, generation)
        return state

    def _load(self, part: int) -> AggregationState:
        q = self._conn.execute
        rows = q(sql.LOAD_STATE, (part,)).fetchall()
        restored = changelog.replay(payload for _, payload in rows)
        self._next_seq[part] = rows[-1][0] + 1 if rows else 0
        self._log_entries[part] = restored.entries
        self._snapshot_entries[part] = 0
        (watermark,) = q("SELECT watermark FROM agg_parts WHERE part = ?", (part,)).fetchone()
        state = AggregationState(**self._state_args)
        state.load(
            specs=list(self.specs.values()),
            events=[(i, user, ts) for i, (user, ts) in restored.events.items()],
            buckets=list(changelog.bucket_rows(restored)),
            anchors=[(e, u, anchor) for (e, u), anchor in restored.anchors.items()],
            stats=restored.stats,
            late=restored.late,
            partitions=restored.partitions,
            watermark=watermark,
        )
        return state

    def _state(self, part: int) -> AggregationState:
        state = self.states.get(part)
        return state if state is not None else self._claim(part)

    # ---- reading -----------------------------------------------------------------------
    def incarnation(self) -> str | None:
        """The id of the broker log this state was built from (None: not recorded yet)."""
        row = self._conn.execute("SELECT value FROM agg_meta WHERE name = 'incarnation'").fetchone()
        return None if row is None else str(row[0])

    def record_incarnation(self, incarnation: str) -> None:
        """Keep ``incarnation`` with the state unless one is recorded already (the first writer wins)."""
        self._conn.execute(
            "INSERT INTO agg_meta (name, value) VALUES ('incarnation', ?) ON CONFLICT (name) DO NOTHING",
            (incarnation,),
        )

    def all_stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset stored for every (topic, partition), owned here or not."""
        rows = self._conn.execute("SELECT topic, partition_id, next_offset FROM agg_offsets").fetchall()
        return {(t, p): o for t, p, o in rows}

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to consume per (topic, partition) of the owned partitions and the specs."""
        return dict(self._offsets)

    def experiments(self) -> list[str]:
        return sorted(self.specs)

    def spec(self, experiment: str) -> ExperimentSpec | None:
        return self.specs.get(experiment)

    def partial_records(self, experiment: str) -> list[dict[str, Any]]:
        """The ``experiment-metrics`` records of each owned partition (what this process publishes)."""
        return [record for part in sorted(self.states) for record in self._partials(part, experiment)]

    def _partials(self, part: int, experiment: str) -> list[dict[str, Any]]:
        return self.states[part].metric_records(experiment, partition=part)

    def metric_records(self, experiment: str) -> list[dict[str, Any]]:
        """The totals over the owned partitions, as a reader summing their partials gets them."""
        if experiment not in self.specs:
            return []
        partials = self.partial_records(experiment)
        if not partials:  # no partition owned yet: zeros, from the spec alone
            return self._spec_check.metric_records(experiment)
        return merge_partials(partials)

    def outbox(self) -> list[OutboxItem]:
        """Dead letters and metric records committed but not yet cleared (one per id: order is free)."""
        owned = [sql.SHARED, *sorted(self.states)]
        marks = ", ".join("?" * len(owned))
        rows = self._conn.execute(
            f"SELECT outbox_id, kind, record_key, payload FROM agg_outbox WHERE part IN ({marks}) "  # noqa: S608 (placeholders)
            "ORDER BY outbox_id", owned,
        ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def clear_outbox(self, outbox_ids: Iterable[str]) -> None:
        """Forget outbox items once the broker has acknowledged them."""
        self._conn.execute(self._dialect.begin)
        self._conn.executemany(sql.DELETE_OUTBOX, [(i,) for i in outbox_ids])
        self._conn.execute("COMMIT")

    @property
    def watermark(self) -> int | None:
        """The slowest owned partition's watermark (None until each has one)."""
        marks = [state.tracker.watermark for state in self.states.values()]
        return None if not marks or None in marks else min(marks)  # type: ignore[type-var]

    # ---- writing -----------------------------------------------------------------------
    def register_spec(self, spec: ExperimentSpec) -> list[dict[str, Any]]:
        """Register a spec outside a batch; returns the metric records that changed."""
        self._check()
        self._register(spec)
        return self._commit({})

    def publish_watermarks(self) -> list[dict[str, Any]]:
        """Commit the records of every experiment whose partition's watermark moved since they were
        last published (nothing, and no transaction, when none did); returns them."""
        self._check()
        if all(self._published_watermarks.get(part) == state.tracker.watermark for part, state in self.states.items()):
            return []
        return self._commit({}, every_watermark=True)

    def declare_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Make input partitions hold their partition's watermark back until each has delivered a record."""
        self._check()
        for topic, partition in partitions:
            self._state(partition).declare_partition((topic, partition))
        self._commit({})

    def apply_batch(self, records: Iterable[InputRecord]) -> BatchResult:
        """Decode, apply and commit a batch (state and next offsets in one transaction)."""
        self._check()
        result = BatchResult()
        offsets: dict[tuple[str, int], int] = {}
        try:
            self._apply(records, result, offsets)
        except BaseException:
            self._broken = True  # memory may be ahead of the database
            raise
        result.metric_records = self._commit(offsets, result.dead_letters)
        result.window_closes, self._window_closes = dict(self._window_closes), Counter()
        result.late, self._late = dict(self._late), Counter()
        return result

    def _apply(self, records: Iterable[InputRecord], result: BatchResult, offsets: dict) -> None:
        # the per-record path of the aggregator: names bound once, counts kept in locals
        roles, stored, states = self._roles, self._offsets, self.states
        event_role, exposure_role, spec_role = EVENTS.name, EXPOSURES.name, EXPERIMENTS.name
        applied = skipped = 0
        for record in records:
            topic, partition, offset, value = record.topic, record.partition, record.offset, record.value
            tp = (topic, partition)
            next_offset = offsets.get(tp)
            if offset < (stored.get(tp, -1) if next_offset is None else next_offset):
                skipped += 1
                continue
            role = roles.get(topic)
            state = states.get(partition)
            if state is None and (role == event_role or role == exposure_role):
                if not self._claim_on_demand:
                    skipped += 1  # fetched before the partition moved away: not ours to apply
                    continue
                state = self._claim(partition)
                if offset < stored.get(tp, -1):  # the claim loaded a newer offset
                    skipped += 1
                    continue
            offsets[tp] = offset + 1
            applied += 1
            reason: str | Exception | None
            try:
                if role == event_role:
                    reason = state.apply_event(decode(value or b"", ListeningEvent), tp)  # type: ignore[union-attr]
                elif role == exposure_role:
                    reason = state.apply_exposure(decode(value or b"", Exposure), tp)  # type: ignore[union-attr]
                elif role == spec_role:
                    reason = self._apply_spec(record)
                else:
                    reason = f"topic {topic!r} is not an input of the aggregator"
            except (InvalidRecord, InvalidSpec) as exc:
                reason = exc
            if reason is not None:
                result.dead_letters.append(
                    dead_letter(
                        raw_value=value, raw_key=record.key, source_topic=topic,
                        partition=partition, offset=offset, error=reason, stage=STAGE,
                    )
                )
        result.applied += applied
        result.skipped += skipped

    def _apply_spec(self, record: InputRecord) -> str | None:
        if record.value is None:
            return None  # a tombstone: aggregation of a deleted experiment is kept as is
        # Batch-only metrics (added to a running experiment) are the batch path's: the stream ignores them.
        spec = spec_from_json(record.value).streamed()
        if record.key is not None and record.key != spec.id.encode("utf-8"):
            return f"key: {record.key!r} does not match the spec id {spec.id!r}"
        check_foldable(spec, max_pre_period_ms=self._max_pre_period_ms, item_sets=self._state_args["item_sets"])
        check_against_surfaces(spec, self._surfaces)  # as serving checks it: both keep the last good version
        self._register(spec)
        return None

    def _register(self, spec: ExperimentSpec) -> None:
        if not self._spec_check.register_spec(spec):  # raises SpecConflict for an unsafe change
            return
        self._spec_check.take_journal()
        self.specs[spec.id] = spec
        self._pending_specs.append(spec)
        for state in self.states.values():
            state.register_spec(spec)

    def _check(self) -> None:
        if self._broken:
            raise StoreError("a previous commit failed: discard this store and reopen the database")

    def _rollback(self) -> None:
        self._broken = True
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _commit(
        self, offsets: dict[tuple[str, int], int], dead_letters: Iterable[DeadLetter] = (), *,
        every_watermark: bool = False,
    ) -> list[dict[str, Any]]:
        changed = self._changed_records(every_watermark=every_watermark)
        outbox = [
            (self._part_of((d.source_topic, d.partition)) if d.source_topic in self._roles else sql.SHARED,
             f"dead_letter:{d.dead_letter_id}", "dead_letter", d.source_topic, d.model_dump_json())
            for d in dead_letters
        ] + [
            (record["partition"], f"metric:{key}", "metric", key, orjson.dumps(record).decode("utf-8"))
            for record in changed
            for key in [record_key(record["experiment"], record["variant"], record["metric"], record["partition"])]
        ]
        specs, self._pending_specs = self._pending_specs, []
        parts = sorted(self.states)
        x = self._conn.executemany
        try:
            self._conn.execute(self._dialect.begin)
            self._fence(parts)
            x(sql.UPSERT_SPEC, [(s.id, spec_to_json(s).decode("utf-8")) for s in specs])
            for part in parts:
                self._write_part(part)
            shared = [(sql.SHARED, t, p, o) for (t, p), o in offsets.items() if self._part_of((t, p)) == sql.SHARED]
            x(sql.UPSERT_SHARED_OFFSET.format(greatest=self._dialect.greatest), shared)
            x(sql.UPSERT_OFFSET, [
                (self._part_of((t, p)), t, p, o) for (t, p), o in offsets.items()
                if self._part_of((t, p)) != sql.SHARED
            ])
            x(sql.UPSERT_OUTBOX, outbox)
            self._conn.execute("COMMIT")
        except FencedWrite:
            self._rollback()
            raise
        except self._db_errors as exc:
            self._rollback()
            raise StoreError(f"commit failed, nothing of this batch was stored: {exc}") from exc
        self._offsets.update(offsets)
        return changed

    def _fence(self, parts: list[int]) -> None:
        """Inside the commit's transaction: every partition written is still ours."""
        if not parts:
            return
        marks = ", ".join("?" * len(parts))
        rows = self._conn.execute(
            f"SELECT part, owner, generation FROM agg_parts WHERE part IN ({marks}) ORDER BY part"  # noqa: S608
            + self._dialect.lock_rows, parts,
        ).fetchall()
        current = {part: (owner, generation) for part, owner, generation in rows}
        lost = [p for p in parts if current.get(p) != (self.owner, self._generations[p])]
        if lost:
            raise FencedWrite(
                f"partitions {lost}: claimed by another process since this one loaded them; nothing was written"
            )

    def compact(self) -> None:
        """Write each owned partition's state as a snapshot in place of its changelog, now (a
        commit does it by itself once the changelog outgrows the last snapshot)."""
        self._check()
        for part in self.states:
            self._log_entries[part] = self._compaction_point(part) + 1
        self._commit({})

    def _compaction_point(self, part: int) -> int:
        return max(changelog.COMPACT_MIN, changelog.COMPACT_FACTOR * self._snapshot_entries[part])

    def _write_part(self, part: int) -> None:
        """One row for the partition's changes; or, once the changelog has grown past its last
        snapshot (and ``COMPACT_MIN``), the whole state in place of the changelog."""
        state = self.states[part]
        journal = state.take_journal()
        self._window_closes.update(contribution[0] for contribution in journal.contributions)
        self._late.update(journal.late)
        seq = self._next_seq[part]
        x = self._conn.executemany
        if self._log_entries[part] > self._compaction_point(part):
            documents, entries = changelog.snapshot(state)
            self._conn.execute(sql.DELETE_STATE, (part,))
            x(sql.INSERT_STATE, [(part, i, changelog.dumps(doc)) for i, doc in enumerate(documents)])
            self._next_seq[part] = len(documents)
            self._log_entries[part] = self._snapshot_entries[part] = entries
        else:
            document, entries = changelog.delta(state, journal)
            if entries:
                self._conn.execute(sql.INSERT_STATE, (part, seq, changelog.dumps(document)))
                self._next_seq[part] = seq + 1
                self._log_entries[part] += entries
        self._conn.execute(sql.SET_WATERMARK, (state.tracker.watermark, part))

    def _changed_records(self, *, every_watermark: bool = False) -> list[dict[str, Any]]:
        """The records whose content changed since they were last published. Only experiments
        the batch touched are recomputed (from the journal not yet taken); once the partition's
        watermark moved by ``watermark_republish_ms`` since every record of it was last published
        (or moved at all, with ``every_watermark``), the others' last records are republished
        with the new watermark."""
        touched: dict[int, set[str]] = {}
        moved: dict[int, int] = {}  # partitions whose every record gets the new watermark
        for part, state in self.states.items():
            watermark = state.tracker.watermark
            published = self._published_watermarks.get(part, -1)
            if published == -1 or watermark != published and (
                every_watermark or published is None or watermark is None
                or watermark - published >= self._watermark_republish_ms
            ):
                self._published_watermarks[part] = watermark
                moved[part] = watermark or 0
            j = state.journal
            touched[part] = (
                {e for e, _ in j.anchors} | {c[0] for c in j.contributions} | set(j.late) | {s.id for s in j.specs}
            )
        changed = []
        parts = sorted(self.states)
        emitted = self._emitted
        for experiment in sorted(self.specs):
            for part in parts:
                if experiment in touched[part]:
                    records = self._partials(part, experiment)
                elif part in moved:
                    records = self._rewatermarked(part, experiment, moved[part])
                else:
                    continue
                for record in records:
                    key = record_key(record["experiment"], record["variant"], record["metric"], part)
                    if emitted.get(key, {}).get("record_id") != record["record_id"]:
                        emitted[key] = record
                        changed.append(record)
        return changed

    def _rewatermarked(self, part: int, experiment: str, watermark: int) -> list[dict[str, Any]]:
        """The records of an experiment the batch did not change, as of the partition's new
        watermark: their figures are those last published, so only the watermark and the id are
        new, and nothing is recomputed (records not all published yet are computed)."""
        spec = self.specs[experiment]
        last = [
            self._emitted.get(record_key(experiment, variant.name, metric.name, part))
            for variant in spec.variants for metric in spec.metrics
        ]
        if any(record is None for record in last):
            return self._partials(part, experiment)
        return [with_watermark(record, watermark) for record in last if record is not None]
