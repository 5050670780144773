"""SQLite-backed aggregation store: state and consumed offsets committed in one transaction.

The whole state lives in memory (``AggregationState``) and is written through to SQLite once
per batch, together with the next offset of every partition the batch touched. After a
crash, reopen the database, seek each partition to ``stored_offsets()`` and replay: records
below a stored offset are skipped, so nothing is applied twice.

>>> store = AggregationStore(":memory:", allowed_lateness_ms=0)
>>> result = store.apply_batch([SourceRecord("tandem.events", 0, 0, b"u1", b"not json")])
>>> result.dead_letters[0].error[:30], store.stored_offsets()
('ListeningEvent: malformed JSON', {('tandem.events', 0): 1})
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from experiments.aggregation import schema as sql
from experiments.aggregation.state import AggregationState, Anchor
from experiments.aggregation.stats import SufficientStats, record_key
from experiments.aggregation.windows import Contribution, TypeSummary
from experiments.errors import InvalidSpec, StoreError
from experiments.spec import ExperimentSpec, spec_from_json, spec_to_json
from infra.kafka.topics import EVENTS, EXPERIMENTS, EXPOSURES
from streams.errors import InvalidRecord
from streams.events import DeadLetter, Exposure, ListeningEvent, dead_letter, decode

logger = logging.getLogger(__name__)

STAGE = "experiments.aggregation"
INPUTS = (EVENTS, EXPOSURES, EXPERIMENTS)


def default_topics(prefix: str = "tandem.") -> dict[str, str]:
    """Each input's role (its topic's name) and its name on the broker: ``{"events": "tandem.events", ...}``."""
    return {topic.name: f"{prefix}{topic.name}" for topic in INPUTS}


class SourceRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: ``experiment-metrics`` records whose content changed (publish with key ``record_id``'s key part).
    metric_records: list[dict[str, Any]] = field(default_factory=list)
    applied: int = 0
    skipped: int = 0


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
    ) -> None:
        topics = dict(topics or default_topics())
        roles = [topic.name for topic in INPUTS]
        if sorted(topics) != sorted(roles):
            raise ValueError(f"topics: needs exactly the keys {', '.join(roles)}")
        self._roles = {name: role for role, name in topics.items()}
        self._conn = sqlite3.connect(str(path), isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # atomic; a power cut may lose the tail
        self._conn.executescript(sql.SCHEMA)
        self._broken = False
        self._emitted: dict[str, dict[str, Any]] = {}
        self._offsets: dict[tuple[str, int], int] = {
            (t, p): o for t, p, o in self._conn.execute("SELECT * FROM agg_offsets")
        }
        self.state = AggregationState(
            allowed_lateness_ms=allowed_lateness_ms, min_retention_ms=min_retention_ms, resolution_ms=resolution_ms
        )
        self._load()

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AggregationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> None:
        q = self._conn.execute
        stats: dict[tuple[str, str, str], SufficientStats] = {}
        for e, v, m, value, den, pre in q(sql.LOAD_CONTRIBUTIONS):
            stats.setdefault((e, v, m), SufficientStats()).add(Contribution(value, den, pre))
        meta = dict(q("SELECT name, value FROM agg_meta").fetchall())
        self.state.load(
            specs=[spec_from_json(raw) for (raw,) in q("SELECT spec_json FROM agg_specs")],
            events=q("SELECT event_id, user_id, ts FROM agg_events").fetchall(),
            buckets=[
                (user, start, etype, TypeSummary.from_row(row))
                for user, start, summary in q("SELECT user_id, bucket_start, summary FROM agg_buckets")
                for etype, row in json.loads(summary).items()
            ],
            exposures=q("SELECT exposure_id, ts FROM agg_exposures").fetchall(),
            anchors=[
                (e, u, Anchor(v, ts, x, bool(multi)))
                for e, u, v, ts, x, multi in q("SELECT * FROM agg_first_exposures")
            ],
            stats=stats,
            late=dict(q("SELECT experiment, n FROM agg_late_records").fetchall()),
            partitions={(t, p): ts for t, p, ts in q("SELECT * FROM agg_partition_watermarks")},
            watermark=meta.get("watermark"),
        )

    # ---- reading -----------------------------------------------------------------------
    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to consume per (topic, partition), as committed with the state."""
        return dict(self._offsets)

    def experiments(self) -> list[str]:
        return sorted(self.state.specs)

    def spec(self, experiment: str) -> ExperimentSpec | None:
        return self.state.specs.get(experiment)

    def metric_records(self, experiment: str) -> list[dict[str, Any]]:
        return self.state.metric_records(experiment)

    def outbox(self) -> list[OutboxItem]:
        """Dead letters and metric records committed but not yet cleared (one per id: order is free)."""
        rows = self._conn.execute("SELECT outbox_id, kind, record_key, payload FROM agg_outbox ORDER BY outbox_id")
        return [OutboxItem(*row) for row in rows]

    def clear_outbox(self, outbox_ids: Iterable[str]) -> None:
        """Forget outbox items once the broker has acknowledged them."""
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.executemany(sql.DELETE_OUTBOX, [(i,) for i in outbox_ids])
        self._conn.execute("COMMIT")

    @property
    def watermark(self) -> int | None:
        return self.state.tracker.watermark

    # ---- writing -----------------------------------------------------------------------
    def register_spec(self, spec: ExperimentSpec) -> list[dict[str, Any]]:
        """Register a spec outside a batch; returns the metric records that changed."""
        self._check()
        self.state.register_spec(spec)
        return self._commit({})

    def declare_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Make input partitions hold the watermark back until each has delivered a record."""
        self._check()
        for partition in partitions:
            self.state.declare_partition(partition)
        self._commit({})

    def apply_batch(self, records: Iterable[SourceRecord]) -> BatchResult:
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
        return result

    def _apply(self, records: Iterable[SourceRecord], result: BatchResult, offsets: dict) -> None:
        state, roles, stored = self.state, self._roles, self._offsets
        for record in records:
            tp = (record.topic, record.partition)
            if record.offset < offsets.get(tp, stored.get(tp, -1)):
                result.skipped += 1
                continue
            offsets[tp] = record.offset + 1
            result.applied += 1
            role = roles.get(record.topic)
            reason: str | Exception | None
            try:
                if role == EVENTS.name:
                    reason = state.apply_event(decode(record.value or b"", ListeningEvent), tp)
                elif role == EXPOSURES.name:
                    reason = state.apply_exposure(decode(record.value or b"", Exposure), tp)
                elif role == EXPERIMENTS.name:
                    reason = self._apply_spec(record)
                else:
                    reason = f"topic {record.topic!r} is not an input of the aggregator"
            except (InvalidRecord, InvalidSpec) as exc:
                reason = exc
            if reason is not None:
                result.dead_letters.append(
                    dead_letter(
                        raw_value=record.value, raw_key=record.key, source_topic=record.topic,
                        partition=record.partition, offset=record.offset, error=reason, stage=STAGE,
                    )
                )

    def _apply_spec(self, record: SourceRecord) -> str | None:
        if record.value is None:
            return None  # a tombstone: aggregation of a deleted experiment is kept as is
        spec = spec_from_json(record.value)
        if record.key is not None and record.key != spec.id.encode("utf-8"):
            return f"key: {record.key!r} does not match the spec id {spec.id!r}"
        self.state.register_spec(spec)
        return None

    def _check(self) -> None:
        if self._broken:
            raise StoreError("a previous commit failed: discard this store and reopen the database")

    def _commit(
        self, offsets: dict[tuple[str, int], int], dead_letters: Iterable[DeadLetter] = ()
    ) -> list[dict[str, Any]]:
        state = self.state
        changed = self._changed_records()
        outbox = [
            (f"dead_letter:{d.dead_letter_id}", "dead_letter", d.source_topic, d.model_dump_json())
            for d in dead_letters
        ] + [
            (f"metric:{key}", "metric", key, json.dumps(record))
            for record in changed
            for key in [record_key(record["experiment"], record["variant"], record["metric"])]
        ]
        j = state.take_journal()
        anchors = [
            (e, u, a.variant, a.ts, a.exposure_id, int(a.multi))
            for e, u in j.anchors
            for a in [state.anchors[e][u]]
        ]
        buckets = state.buckets
        kept = [
            (user, start, json.dumps({etype: summary.to_row() for etype, summary in sorted(bucket.items())}))
            for user, start in sorted(j.buckets)
            for bucket in [buckets.get(user, {}).get(start)]
            if bucket is not None
        ]
        x = self._conn.executemany
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            x(sql.UPSERT_SPEC, [(s.id, spec_to_json(s).decode("utf-8")) for s in j.specs])
            x(sql.DELETE_EVENT, [(i,) for i in j.pruned_events])
            x(sql.INSERT_EVENT, [(i, state.events[i].user_id, ts) for i, ts in j.events.items()])
            x(sql.DELETE_BUCKET, sorted(j.buckets))
            x(sql.INSERT_BUCKET, kept)
            x(sql.DELETE_EXPOSURE, [(i,) for i in j.pruned_exposures])
            x(sql.INSERT_EXPOSURE, j.exposures.items())
            x(sql.UPSERT_ANCHOR, anchors)
            x(sql.INSERT_CONTRIBUTION, [(e, u, m, v, *c) for e, u, m, v, c in j.contributions])
            x(sql.UPSERT_LATE, [(e, state.late[e]) for e in j.late])
            x(sql.UPSERT_PARTITION, [(t, p, state.tracker.partitions[(t, p)]) for t, p in j.partitions])
            x(sql.UPSERT_META, [("watermark", state.tracker.watermark)])
            x(sql.UPSERT_OFFSET, [(t, p, o) for (t, p), o in offsets.items()])
            x(sql.UPSERT_OUTBOX, outbox)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._broken = True
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"commit failed, nothing of this batch was stored: {exc}") from exc
        self._offsets.update(offsets)
        return changed

    def _changed_records(self) -> list[dict[str, Any]]:
        changed = []
        for experiment in sorted(self.state.specs):
            for record in self.state.metric_records(experiment):
                key = record_key(record["experiment"], record["variant"], record["metric"])
                if self._emitted.get(key, {}).get("record_id") != record["record_id"]:
                    self._emitted[key] = record
                    changed.append(record)
        return changed
