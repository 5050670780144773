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
