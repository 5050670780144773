"""Exposure-anchored metric windows as pure functions over a user's events.

A metric window is ``[f + delay, f + delay + length)`` where ``f`` is the user's first
exposure; the CUPED pre-window is ``[f - covariate.length, f)``. Both are half-open and in
event time (milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from experiments.spec import Measure, Metric
from streams.events import ListeningEvent


class MetricEvent(NamedTuple):
    """The part of a listening event that metrics read (also a row of the ``events`` table)."""

    event_id: str
    user_id: str
    ts: int
    type: str
    item_id: str | None
    genre: str | None
    ms_played: int

    @classmethod
    def of(cls, event: ListeningEvent) -> MetricEvent:
        return cls(
            event.event_id, event.user_id, event.ts, event.type.value, event.item_id, event.genre,
            event.ms_played,
        )


class Contribution(NamedTuple):
    """One user's closed value for a metric: y, the ratio denominator and the CUPED pre-value."""

    value: float
    den: float | None
    pre: float | None


def measure_value(measure: Measure, events: Iterable[MetricEvent], lo: int, hi: int) -> float:
    """The measure over the events with ``lo <= ts < hi``."""
    types = measure.types
    selected = [e for e in events if lo <= e.ts < hi and (types is None or e.type in types)]
    agg = measure.agg
    if agg == "count":
        return float(len(selected))
    if agg == "sum_ms_played":
        return float(sum(e.ms_played for e in selected))
    if agg == "active":
        return 1.0 if selected else 0.0
    if agg == "distinct_items":
        return float(len({e.item_id for e in selected if e.item_id is not None}))
    if agg == "distinct_genres":
        return float(len({e.genre for e in selected if e.genre is not None}))
    raise ValueError(f"agg: unknown aggregation {agg!r}")


def window_bounds(metric: Metric, anchor_ts: int) -> tuple[int, int]:
    start = anchor_ts + metric.window.delay
    return start, start + metric.window.length


def contribution(metric: Metric, events: Iterable[MetricEvent], anchor_ts: int) -> Contribution:
    """The user's value for the metric given the events and the first exposure time."""
    events = list(events)
    lo, hi = window_bounds(metric, anchor_ts)
    if metric.kind == "ratio":
        assert metric.numerator is not None and metric.denominator is not None
        return Contribution(
            measure_value(metric.numerator, events, lo, hi),
            measure_value(metric.denominator, events, lo, hi),
            None,
        )
    assert metric.measure is not None
    value = measure_value(metric.measure, events, lo, hi)
    pre = None
    if metric.covariate is not None:
        pre = measure_value(metric.measure, events, anchor_ts - metric.covariate.length, anchor_ts)
    return Contribution(value, None, pre)


def touches(metric: Metric, anchor_ts: int, event_type: str, ts: int) -> bool:
    """Whether an event could change the metric's value for a user first exposed at ``anchor_ts``."""
    if not metric.selects(event_type):
        return False
    lo, hi = window_bounds(metric, anchor_ts)
    return lo <= ts < hi or anchor_ts - metric.pre_length <= ts < anchor_ts


# ---- per-user history in event-time buckets ---------------------------------------------------
class TypeSummary:
    """What metrics read of one event type inside one bucket: count, ms played, items, genres.

    The item and genre sets are what ``distinct_items``/``distinct_genres`` need; they live only
    as long as their bucket (the lookback horizon), so they are bounded by the items a user
    touches in that span, not by the user's events.
    """

    __slots__ = ("n", "ms_played", "items", "genres")

    def __init__(self, n: int = 0, ms_played: int = 0, items: Iterable[str] = (), genres: Iterable[str] = ()) -> None:
        self.n = n
        self.ms_played = ms_played
        self.items = set(items)
        self.genres = set(genres)

    def fold(self, ms_played: int, item_id: str | None, genre: str | None) -> None:
        self.n += 1
        self.ms_played += ms_played
        if item_id is not None:
            self.items.add(item_id)
        if genre is not None:
            self.genres.add(genre)

    def to_row(self) -> list:
        items, genres = self.items, self.genres  # sorted: a row does not depend on the order of folds
        return [
            self.n, self.ms_played,
            sorted(items) if len(items) > 1 else list(items), sorted(genres) if len(genres) > 1 else list(genres),
        ]

    @classmethod
    def from_row(cls, row: list) -> TypeSummary:
        return cls(row[0], row[1], row[2], row[3])


#: One bucket: event type -> summary.
Bucket = dict[str, TypeSummary]


def bucket_start(ts: int, resolution_ms: int) -> int:
    """The bucket an event time falls in (UTC-aligned: a day bucket starts at midnight UTC)."""
    return ts - ts % resolution_ms


def bucket_measure(measure: Measure, buckets: Iterable[tuple[int, Bucket]], lo: int, hi: int) -> float:
    """The measure over the buckets whose start lies in ``[lo, hi)``.

    With a resolution of 1 ms a bucket is an instant, and this equals ``measure_value`` over the
    raw events; with a coarser resolution a window counts the whole buckets that start inside it.
    """
    types = measure.types
    agg = measure.agg
    n = ms = 0
    items: set[str] = set()
    genres: set[str] = set()
    for start, bucket in buckets:
        if not lo <= start < hi:
            continue
        for etype, summary in bucket.items():
            if types is not None and etype not in types:
                continue
            n += summary.n
            if agg == "sum_ms_played":
                ms += summary.ms_played
            elif agg == "distinct_items":
                items |= summary.items
            elif agg == "distinct_genres":
                genres |= summary.genres
    if agg == "count":
        return float(n)
    if agg == "sum_ms_played":
        return float(ms)
    if agg == "active":
        return 1.0 if n else 0.0
    if agg == "distinct_items":
        return float(len(items))
    if agg == "distinct_genres":
        return float(len(genres))
    raise ValueError(f"agg: unknown aggregation {agg!r}")


def bucket_contribution(metric: Metric, buckets: list[tuple[int, Bucket]], anchor_ts: int) -> Contribution:
    """``contribution`` over a user's bucketed history instead of raw events."""
    lo, hi = window_bounds(metric, anchor_ts)
    if metric.kind == "ratio":
        assert metric.numerator is not None and metric.denominator is not None
        return Contribution(
            bucket_measure(metric.numerator, buckets, lo, hi), bucket_measure(metric.denominator, buckets, lo, hi), None
        )
    assert metric.measure is not None
    value = bucket_measure(metric.measure, buckets, lo, hi)
    pre = None
    if metric.covariate is not None:
        pre = bucket_measure(metric.measure, buckets, anchor_ts - metric.covariate.length, anchor_ts)
    return Contribution(value, None, pre)
