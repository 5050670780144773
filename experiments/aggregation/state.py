"""The aggregation core: first exposures, exposure-anchored windows, lateness, statistics.

Plain Python, no Kafka, no database. Records are applied one at a time, in arrival order;
``apply_event`` and ``apply_exposure`` return None when the record is accepted (a replayed
id is accepted and changes nothing) or the reason it is rejected (the caller makes it a dead
letter). Every change is also written to ``journal`` so a store can persist it.

Rules (docs/architecture.md, "Time and watermarks"):

* The first exposure of a user in an experiment, ordered by ``(ts, exposure_id)``, anchors
  the windows and fixes the variant. An exposure that arrives out of order but is earlier
  re-anchors the user, as long as no window would change after closing. A user seen in
  another variant stays in the first one and is flagged (``multi_variant_users``).
* No raw event is kept. Each event is folded, on arrival, into its user's history: one
  summary per event-time bucket (``resolution_ms``) and event type (count, ms played, the
  items and genres). Windows and CUPED pre-windows are evaluated over those buckets when
  they close, so the cost of an event does not depend on how many experiments are live, and
  a user's state is bounded by the buckets of the lookback (longest window end + longest
  pre-window), not by the user's events. At a resolution of 1 ms (the default) a bucket is an
  instant and every figure equals today's exact window over raw events; at a coarser
  resolution (a day in production) a window counts the buckets that start inside it.
  What is remembered per event is its id and time, for dedupe, over the same lookback, or over
  ``dedupe_span_ms`` behind watermark - allowed lateness, beyond which an event is late.
* No exposure id is remembered: an exposure only ever moves its user's anchor to the smallest
  ``(ts, exposure_id)`` and sets the multi-variant flag, and the anchor is kept as long as the
  experiment, so a replayed exposure finds its own effect already there and changes nothing.
  Serving logs an exposure per request; remembering their ids would grow state with requests.
* A user's metric window closes when ``watermark - allowed_lateness >= window end``; its
  value is then computed once and added to the statistics. A record older than that point
  that would change a closed window (an event inside it, of a type the metric reads; an
  exposure whose windows would already be closed) is late: rejected and counted.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import NamedTuple

from experiments.aggregation.stats import SufficientStats, metric_record
from experiments.aggregation.watermark import Partition, WatermarkTracker
from experiments.aggregation.windows import (
    Bucket,
    Contribution,
    TypeSummary,
    bucket_contribution,
    bucket_start,
    touches,
)
from experiments.errors import SpecConflict
from experiments.spec import ExperimentSpec
from streams.events import Exposure, ListeningEvent

#: Fields of a spec that may change while the experiment runs; any other change is refused.
#: ``periods`` are a bandit's; ``status`` and ``history`` are the lifecycle's (a stopped experiment's
#: windows still close); ``metrics`` reach the state without their batch-only ones, so adding one
#: is no change here.
MUTABLE_SPEC_FIELDS = frozenset({"description", "end", "alpha", "correction", "periods", "status", "history"})

class SeenEvent(NamedTuple):
    """What is remembered of an accepted event: enough to drop a duplicate of it."""

    ts: int
    user_id: str


@dataclass(slots=True)
class Anchor:
    """A user's first exposure in an experiment."""

    variant: str
    ts: int
    exposure_id: str
    multi: bool = False


@dataclass(slots=True)
class Journal:
    """What changed since the last ``take_journal()``, for the store to persist."""

    specs: list[ExperimentSpec] = field(default_factory=list)
    #: Net effect: an id stored and pruned again within one journal never reaches the database;
    #: persist deletions before insertions (an id pruned and then seen again is in both).
    events: dict[str, int] = field(default_factory=dict)
    pruned_events: list[str] = field(default_factory=list)
    #: (user, bucket start) whose summary changed or went away: the store rewrites them from memory.
    buckets: set[tuple[str, int]] = field(default_factory=set)
    anchors: set[tuple[str, str]] = field(default_factory=set)
    contributions: list[tuple[str, str, str, str, Contribution]] = field(default_factory=list)
    late: dict[str, int] = field(default_factory=dict)  # late records per experiment
    partitions: set[Partition] = field(default_factory=set)


class AggregationState:
    def __init__(
        self, *, allowed_lateness_ms: int, min_retention_ms: int = 0, resolution_ms: int = 1,
        dedupe_span_ms: int | None = None, item_sets: bool = True,
    ) -> None:
        if resolution_ms < 1:
            raise ValueError("resolution_ms: must be at least 1")
        if dedupe_span_ms is not None and dedupe_span_ms < 0:
            raise ValueError("dedupe_span_ms: must not be negative")
        # How long (behind watermark - allowed lateness) event ids are remembered; None: the
        # lookback. An event older than that is late: a duplicate of it could not be told apart.
        self.dedupe_span_ms = dedupe_span_ms
        # Without the item and genre sets a bucket is a few numbers, whatever the listening; then no
        # distinct_items/distinct_genres metric can be folded (``check_foldable`` refuses it).
        self.item_sets = item_sets
        self.tracker = WatermarkTracker(allowed_lateness_ms=allowed_lateness_ms)
        self.min_retention_ms = min_retention_ms
        self.resolution_ms = resolution_ms
        self.specs: dict[str, ExperimentSpec] = {}
        self.events: dict[str, SeenEvent] = {}  # dedupe over the lookback
        self.buckets: dict[str, dict[int, Bucket]] = {}  # user -> bucket start -> event type -> summary
        self.bucket_starts: dict[str, list[int]] = {}  # user -> sorted bucket starts
        self.anchors: dict[str, dict[str, Anchor]] = {}  # experiment -> user -> anchor
        self.user_anchors: dict[str, dict[str, Anchor]] = {}  # user -> experiment -> anchor
        self.stats: dict[tuple[str, str, str], SufficientStats] = {}
        self.late: dict[str, int] = {}
        self.counts: dict[tuple[str, str], list[int]] = {}  # (exp, variant) -> [exposed, multi-variant]
        self.journal = Journal()
        self._closing: list[tuple[int, str, str, str, int]] = []  # (end, exp, user, metric, anchor ts)
        self._expiry: list[tuple[int, int, str]] = []  # (ts, 0 event | 2 bucket, id or user)
        self._id_expiry: list[tuple[int, int, str]] = []  # (ts, 0, event id) with a dedupe span
        self._closed_upto: int | None = None
        self._horizon = min_retention_ms

    # ---- specs -------------------------------------------------------------------------
    def register_spec(self, spec: ExperimentSpec) -> bool:
        """Add or update a spec; False if unchanged. Raises ``SpecConflict`` for unsafe changes."""
        current = self.specs.get(spec.id)
        if current == spec:
            return False
        if current is not None:
            changed = [
                name for name in type(spec).model_fields
                if getattr(spec, name) != getattr(current, name) and name not in MUTABLE_SPEC_FIELDS
            ]
            if changed:
                raise SpecConflict(
                    f"{', '.join(changed)}: cannot change while experiment {spec.id!r} runs "
                    "(only description, end, alpha, correction and the lifecycle's status may); "
                    "start a new experiment id"
                )
        self._install(spec)
        self.journal.specs.append(spec)
        return True

    def _install(self, spec: ExperimentSpec) -> None:
        self.specs[spec.id] = spec
        self.anchors.setdefault(spec.id, {})
        # metrics never change while an experiment runs, so the horizon only grows
        self._horizon = max(self._horizon, spec.lookback)

    # ---- records -----------------------------------------------------------------------
    # A refused record (the reason says why) changes nothing, its partition's watermark included: an
    # exposure of an unknown experiment stamped days ahead would otherwise close windows early and
    # make the valid records after it late (found by the chaos harness, infra/chaos/hostile_input.py).
    def apply_event(self, event: ListeningEvent, partition: Partition) -> str | None:
        reason = self._event(event)
        if reason is None:
            self._observe(partition, event.ts)
        return reason

    def apply_exposure(self, exposure: Exposure, partition: Partition) -> str | None:
        reason = self._exposure(exposure)
        if reason is None:
            self._observe(partition, exposure.ts)
        return reason

    def _event(self, event: ListeningEvent) -> str | None:
        if event.event_id in self.events:
            return None
        closed = self._closed_upto
        start = bucket_start(event.ts, self.resolution_ms)
        if closed is not None and start < closed:
            etype = event.type.value
            hit = sorted(
                exp for exp, anchor in self.user_anchors.get(event.user_id, {}).items()
                if any(
                    anchor.ts + m.end_offset <= closed and touches(m, anchor.ts, etype, start)
                    for m in self.specs[exp].metrics
                )
            )
            if hit:
                for exp in hit:
                    self._count_late(exp)
                return (
                    f"late: event time {event.ts} is before watermark - allowed lateness ({closed}) "
                    f"and falls in a closed window of {', '.join(hit)}"
                )
            if event.ts < closed - self._horizon:
                return None  # no open window and no acceptable future exposure can reach it
            span = self.dedupe_span_ms
            if span is not None and event.ts < closed - span:
                for exp in sorted(self.user_anchors.get(event.user_id, {})):  # the user's experiments
                    self._count_late(exp)
                return (
                    f"late: event time {event.ts} is before watermark - allowed lateness - dedupe span "
                    f"({closed - span}): a duplicate of it could no longer be told apart"
                )
        user = event.user_id
        self.events[event.event_id] = SeenEvent(event.ts, user)
        heapq.heappush(self._expiry if self.dedupe_span_ms is None else self._id_expiry, (event.ts, 0, event.event_id))
        self.journal.events[event.event_id] = event.ts
        keep = self.item_sets
        self._bucket(user, start).setdefault(event.type.value, TypeSummary()).fold(
            event.ms_played, event.item_id if keep else None, event.genre if keep else None
        )
        self.journal.buckets.add((user, start))
        return None

    def _bucket(self, user: str, start: int) -> Bucket:
        buckets = self.buckets.get(user)
        if buckets is None:
            buckets = self.buckets[user] = {}
        bucket = buckets.get(start)
        if bucket is None:
            bucket = buckets[start] = {}
            starts = self.bucket_starts.setdefault(user, [])
            if not starts or starts[-1] < start:
                starts.append(start)
            else:
                insort(starts, start)
            # a bucket can go once its last instant is behind the horizon: queue it at that instant
            heapq.heappush(self._expiry, (start + self.resolution_ms - 1, 2, user))
        return bucket

    def _exposure(self, exposure: Exposure) -> str | None:
        exp, user = exposure.experiment, exposure.user_id
        spec = self.specs.get(exp)
        if spec is None:
            return f"unknown experiment {exp!r}"
        if spec.variant(exposure.variant) is None:
            return f"variant: {exposure.variant!r} is not a variant of experiment {exp!r}"
        if not spec.start <= exposure.ts < spec.end:
            return f"ts: {exposure.ts} is outside experiment {exp!r} [{spec.start}, {spec.end})"
        anchor = self.anchors[exp].get(user)
        if anchor is None or (exposure.ts, exposure.exposure_id) < (anchor.ts, anchor.exposure_id):
            closed = self._closed_upto
            if closed is not None and exposure.ts + spec.min_end_offset <= closed:
                self._count_late(exp)
                return (
                    f"late: exposure at {exposure.ts} would anchor windows already closed by "
                    f"watermark - allowed lateness ({closed})"
                )
            if anchor is None:
                anchor = Anchor(exposure.variant, exposure.ts, exposure.exposure_id)
                self.anchors[exp][user] = anchor
                self.user_anchors.setdefault(user, {})[exp] = anchor
                self._count(exp, anchor, 1)
                self._schedule(spec, user, anchor)
            else:  # an earlier exposure arrived late, but every window is still open: re-anchor
                self._count(exp, anchor, -1)
                anchor.multi = anchor.multi or anchor.variant != exposure.variant
                moved = anchor.ts != exposure.ts
                anchor.variant, anchor.ts, anchor.exposure_id = (
                    exposure.variant, exposure.ts, exposure.exposure_id
                )
                self._count(exp, anchor, 1)
                if moved:
                    self._schedule(spec, user, anchor)
        elif exposure.variant != anchor.variant and not anchor.multi:
            self._count(exp, anchor, -1)
            anchor.multi = True
            self._count(exp, anchor, 1)
        else:
            return None  # a later exposure, or this one replayed: the anchor already says it all
        self.journal.anchors.add((exp, user))
        return None

    def _count_late(self, exp: str) -> None:
        self.late[exp] = self.late.get(exp, 0) + 1
        self.journal.late[exp] = self.journal.late.get(exp, 0) + 1

    def _count(self, exp: str, anchor: Anchor, sign: int) -> None:
        counts = self.counts.get((exp, anchor.variant))
        if counts is None:
            counts = self.counts[(exp, anchor.variant)] = [0, 0]
        counts[0] += sign
        counts[1] += sign * anchor.multi

    # ---- time --------------------------------------------------------------------------
    def _schedule(self, spec: ExperimentSpec, user: str, anchor: Anchor) -> None:
        for metric in spec.metrics:
            heapq.heappush(self._closing, (anchor.ts + metric.end_offset, spec.id, user, metric.name, anchor.ts))

    def _observe(self, partition: Partition, ts: int) -> None:
        tracker = self.tracker
        seen = tracker.partitions.get(partition)
        if seen is not None and ts <= seen:
            return  # nothing moves: most records, in a partition read in order
        before = tracker.watermark
        tracker.observe(partition, ts)
        self.journal.partitions.add(partition)
        if tracker.watermark != before:
            self._close(tracker.closed_upto)  # type: ignore[arg-type]
            self._prune()

    def declare_partition(self, partition: Partition) -> None:
        self.tracker.declare(partition)
        self.journal.partitions.add(partition)

    def _close(self, upto: int) -> None:
        self._closed_upto = upto
        closing = self._closing
        while closing and closing[0][0] <= upto:
            _, exp, user, name, anchor_ts = heapq.heappop(closing)
            anchor = self.anchors[exp].get(user)
            if anchor is None or anchor.ts != anchor_ts:
                continue  # re-anchored: a fresher entry exists
            metric = self.specs[exp].metric(name)
            assert metric is not None
            value = bucket_contribution(
                metric, self._history(user, anchor.ts - metric.pre_length, anchor.ts + metric.end_offset), anchor.ts
            )
            key = (exp, anchor.variant, name)
            stats = self.stats.get(key)
            if stats is None:
                stats = self.stats[key] = SufficientStats()
            stats.add(value)
            self.journal.contributions.append((exp, user, name, anchor.variant, value))

    def _history(self, user: str, lo: int, hi: int) -> list[tuple[int, Bucket]]:
        """The user's buckets starting in ``[lo, hi)``, in time order."""
        starts = self.bucket_starts.get(user)
        if not starts:
            return []
        buckets = self.buckets[user]
        first = bisect_left(starts, lo)
        last = bisect_left(starts, hi, lo=first)
        return [(start, buckets[start]) for start in starts[first:last]]

    def _prune(self) -> None:
        """Forget buckets and event ids no window can need any more.

        Runs whenever the watermark moves, so what is remembered (and so what a duplicate of a
        very old record does) depends only on the sequence of records, never on batch sizes.
        """
        bound = self._closed_upto - self._horizon  # type: ignore[operator]
        if self.dedupe_span_ms is not None:
            self._prune_ids(self._closed_upto - min(self.dedupe_span_ms, self._horizon))  # type: ignore[operator]
        expiry = self._expiry
        while expiry and expiry[0][0] < bound:
            _, kind, record_id = heapq.heappop(expiry)
            if kind == 0:
                if self.events.pop(record_id, None) is not None:
                    if self.journal.events.pop(record_id, None) is None:
                        self.journal.pruned_events.append(record_id)
            else:
                self._drop_buckets(record_id, bound)

    def _prune_ids(self, bound: int) -> None:
        expiry = self._id_expiry
        while expiry and expiry[0][0] < bound:
            _, _, event_id = heapq.heappop(expiry)
            if self.events.pop(event_id, None) is not None:
                if self.journal.events.pop(event_id, None) is None:
                    self.journal.pruned_events.append(event_id)

    def _drop_buckets(self, user: str, bound: int) -> None:
        """Drop the user's buckets whose last instant is before ``bound``."""
        starts = self.bucket_starts.get(user)
        if starts is None:
            return  # an earlier entry already dropped them
        gone = bisect_left(starts, bound - self.resolution_ms + 1)
        buckets = self.buckets[user]
        for start in starts[:gone]:
            del buckets[start]
            self.journal.buckets.add((user, start))
        del starts[:gone]
        if not starts:
            del self.bucket_starts[user], self.buckets[user]

    # ---- loading and reading -----------------------------------------------------------
    def load(
        self,
        *,
        specs: list[ExperimentSpec],
        events: list[tuple[str, str, int]],
        buckets: list[tuple[str, int, str, TypeSummary]],
        anchors: list[tuple[str, str, Anchor]],
        stats: dict[tuple[str, str, str], SufficientStats],
        late: dict[str, int],
        partitions: dict[Partition, int | None],
        watermark: int | None,
    ) -> None:
        """Restore persisted state (the journal stays empty)."""
        for spec in specs:
            self._install(spec)
        ids = self._expiry if self.dedupe_span_ms is None else self._id_expiry
        for event_id, user, ts in events:
            self.events[event_id] = SeenEvent(ts, user)
            ids.append((ts, 0, event_id))
        heapq.heapify(self._id_expiry)
        for user, start, etype, summary in sorted(buckets, key=lambda row: (row[0], row[1])):
            user_buckets = self.buckets.setdefault(user, {})
            if start not in user_buckets:
                user_buckets[start] = {}
                self.bucket_starts.setdefault(user, []).append(start)
                self._expiry.append((start + self.resolution_ms - 1, 2, user))
            user_buckets[start][etype] = summary
        heapq.heapify(self._expiry)
        self.tracker.restore(partitions, watermark)
        self._closed_upto = self.tracker.closed_upto
        for exp, user, anchor in anchors:
            self.anchors.setdefault(exp, {})[user] = anchor
            self.user_anchors.setdefault(user, {})[exp] = anchor
            self._count(exp, anchor, 1)
            for metric in self.specs[exp].metrics:
                end = anchor.ts + metric.end_offset
                if self._closed_upto is None or end > self._closed_upto:
                    self._closing.append((end, exp, user, metric.name, anchor.ts))
        heapq.heapify(self._closing)
        self.stats.update(stats)
        self.late.update(late)

    def take_journal(self) -> Journal:
        journal, self.journal = self.journal, Journal()
        return journal

    def metric_records(self, experiment: str, *, partition: int | None = None) -> list[dict]:
        """The current ``experiment-metrics`` records of one experiment (empty if unknown); with
        ``partition``, as the partials of that input partition."""
        spec = self.specs.get(experiment)
        if spec is None:
            return []
        watermark = self.tracker.watermark or 0
        return [
            metric_record(
                experiment=experiment, variant=variant.name, metric=metric,
                stats=self.stats.get((experiment, variant.name, metric.name)) or SufficientStats(),
                exposed=counts[0], watermark_ts=watermark,
                late_records=self.late.get(experiment, 0), multi_variant_users=counts[1], partition=partition,
            )
            for variant in spec.variants
            for counts in [self.counts.get((experiment, variant.name), (0, 0))]
            for metric in spec.metrics
        ]
