"""The core's memory: bounded by users and event-time buckets, not by events."""

from __future__ import annotations

import random

from experiments.aggregation.state import AggregationState
from experiments.aggregation.windows import bucket_measure, bucket_start
from experiments.spec import parse_spec
from streams.events import Exposure, ListeningEvent

T0 = 1_767_225_600_000  # midnight UTC
D = 86_400_000
SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": T0, "end": T0 + 60 * D, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "plays", "window": {"length": "7d"}, "covariate": {"length": "7d"}},
        {"name": "items", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_items", "window": {"length": "7d"}},
    ],
})
PARTS = [("tandem.events", 0), ("tandem.exposures", 0)]


def run(events_per_user: int, *, users: int = 20, resolution_ms: int = D) -> AggregationState:
    rng = random.Random(events_per_user)
    state = AggregationState(allowed_lateness_ms=0, resolution_ms=resolution_ms)
    state.register_spec(SPEC)
    for user in range(users):
        state.apply_exposure(Exposure(exposure_id=f"x{user}", experiment="exp", variant="ab"[user % 2],
                                      user_id=f"u{user}", ts=T0 + 7 * D + user), PARTS[1])
    # every user's events spread over the 14 days around the exposure; the watermark stays behind
    for i in range(events_per_user * users):
        ts = T0 + rng.randrange(14 * D)
        state.apply_event(ListeningEvent(event_id=f"e{i}", user_id=f"u{i % users}", ts=ts, type="play",
                                         item_id=f"i{rng.randrange(5)}"), PARTS[0])
    return state


def test_buckets_per_user_do_not_grow_with_events():
    few, many = run(10), run(100)
    rows = [sum(len(b) for b in s.buckets.values()) for s in (few, many)]
    assert rows[0] < rows[1] <= 20 * 14  # at most one bucket per user and day of the span, whatever the events
    assert len(many.events) == 2000  # ids are kept for dedupe over the lookback: the one per-event memory


def test_a_day_resolution_counts_the_days_that_start_in_the_window():
    state = AggregationState(allowed_lateness_ms=0, resolution_ms=D)
    state.register_spec(SPEC)
    f = T0 + 7 * D + 5 * 3_600_000  # exposed at 05:00 on day 7
    state.apply_exposure(Exposure(exposure_id="x", experiment="exp", variant="a", user_id="u", ts=f), PARTS[1])
    times = [f - 7 * D - 1, f - 1, f + 1, f + 7 * D - 1, T0 + 14 * D + 1]
    for i, ts in enumerate(times):
        state.apply_event(ListeningEvent(event_id=f"e{i}", user_id="u", ts=ts, type="play", item_id="i"), PARTS[0])
    history = list(state.buckets["u"].items())
    assert [start for start, _ in history] == sorted({bucket_start(ts, D) for ts in times})
    # the window [f, f + 7d) holds the buckets of days 8..14: day 14's two plays (f + 7d - 1 and
    # T0 + 14d + 1); the pre-window [f - 7d, f) holds days 1..7: day 7's two (f - 1 and f + 1)
    window = bucket_measure(SPEC.metrics[0].measure, history, f, f + 7 * D)
    pre = bucket_measure(SPEC.metrics[0].measure, history, f - 7 * D, f)
    assert (window, pre) == (2.0, 2.0)
    state.apply_exposure(Exposure(exposure_id="y", experiment="exp", variant="a", user_id="v", ts=T0 + 30 * D),
                         PARTS[1])
    state.apply_event(ListeningEvent(event_id="z", user_id="v", ts=T0 + 30 * D, type="play", item_id="i"), PARTS[0])
    plays = {r["metric"]: r for r in state.metric_records("exp") if r["variant"] == "a"}["plays"]
    assert (plays["n"], plays["sum"], plays["pre_sum"]) == (1, window, pre)
    assert "u" not in state.buckets  # closed and behind the lookback: forgotten


def test_a_dedupe_span_bounds_the_ids_and_makes_older_events_late():
    span = D
    state = AggregationState(allowed_lateness_ms=0, resolution_ms=D, dedupe_span_ms=span)
    state.register_spec(SPEC)
    for part in PARTS:
        state.declare_partition(part)
    state.apply_exposure(Exposure(exposure_id="x", experiment="exp", variant="a", user_id="u", ts=T0 + 7 * D),
                         PARTS[1])
    for day in range(14):  # one event a day; exposures keep pace, so the watermark is the day
        ts = T0 + day * D
        assert state.apply_event(ListeningEvent(event_id=f"e{day}", user_id="u", ts=ts, type="play",
                                                item_id="i"), PARTS[0]) is None
        state.apply_exposure(Exposure(exposure_id=f"y{day}", experiment="exp", variant="a", user_id="v", ts=ts),
                             PARTS[1])
    closed = state.tracker.closed_upto
    assert closed == T0 + 13 * D
    assert all(seen.ts >= closed - span for seen in state.events.values())  # only the last day's ids
    assert len(state.events) == 2
    # an event older than the span: its id is forgotten, so it is late (counted), never folded again
    late_ts = closed - span - 1
    old = ListeningEvent(event_id="e-old", user_id="u", ts=late_ts, type="skip", item_id="i")
    reason = state.apply_event(old, PARTS[0])
    assert reason is not None and reason.startswith("late") and "dedupe span" in reason
    assert state.late == {"exp": 1}
    # within the span a duplicate is recognised as such, and nothing changes
    before = state.metric_records("exp")
    assert state.apply_event(ListeningEvent(event_id="e13", user_id="u", ts=T0 + 13 * D, type="play",
                                            item_id="i"), PARTS[0]) is None
    assert state.metric_records("exp") == before


def test_a_refused_record_moves_no_watermark():
    """An exposure of an unknown experiment stamped days ahead is a dead letter and nothing else: it
    must not close windows and make the valid events after it late (found by the chaos harness)."""
    state = AggregationState(allowed_lateness_ms=0, resolution_ms=1)
    state.register_spec(SPEC)
    for partition in PARTS:
        state.declare_partition(partition)
    state.apply_exposure(Exposure(exposure_id="x", experiment="exp", variant="a", user_id="u", ts=T0 + D), PARTS[1])
    state.apply_event(ListeningEvent(event_id="e0", user_id="u", ts=T0 + D, type="play", item_id="i"), PARTS[0])
    before = state.tracker.watermark
    ghost = Exposure(exposure_id="g", experiment="no-such", variant="a", user_id="v", ts=T0 + 30 * D)
    assert state.apply_exposure(ghost, PARTS[1]) is not None  # refused
    late_event = ListeningEvent(event_id="e-far", user_id="u", ts=T0 + 30 * D, type="play", item_id="i")
    assert state.apply_event(late_event.model_copy(update={"ts": T0 + 40 * D - 1}), PARTS[0]) is None
    assert state.tracker.watermark == before  # the exposures partition still holds it at T0 + 1 d
    # a valid play two days after the exposure is inside the user's open 7-day window, not late
    assert state.apply_event(ListeningEvent(event_id="e1", user_id="u", ts=T0 + 3 * D, type="play",
                                            item_id="i"), PARTS[0]) is None
    assert state.late == {}


def test_exposures_logged_on_every_request_leave_no_trace_but_the_anchor():
    """Serving logs an exposure per request: state must not grow with them, and a replay of any
    of them (the first one included) changes nothing."""
    state = AggregationState(allowed_lateness_ms=0, resolution_ms=D)
    state.register_spec(SPEC)
    requests = [Exposure(exposure_id=f"x{day}-{i}", experiment="exp", variant="a", user_id="u",
                         ts=T0 + day * D + i) for day in range(5) for i in range(3)]
    for exposure in requests:
        assert state.apply_exposure(exposure, PARTS[1]) is None
    first = state.anchors["exp"]["u"]
    assert (first.ts, first.exposure_id, first.multi) == (T0, "x0-0", False)
    journal = state.take_journal()
    assert journal.anchors == {("exp", "u")}
    before = state.metric_records("exp")
    for exposure in reversed(requests):
        assert state.apply_exposure(exposure, PARTS[1]) is None
    assert state.take_journal().anchors == set()  # nothing to persist
    assert state.metric_records("exp") == before
    # one in the other variant flags the user once; its replay is a no-op too
    other = Exposure(exposure_id="x9", experiment="exp", variant="b", user_id="u", ts=T0 + 9 * D)
    for _ in range(2):
        assert state.apply_exposure(other, PARTS[1]) is None
    assert state.anchors["exp"]["u"].multi and state.counts[("exp", "a")] == [1, 1]


def test_without_item_sets_a_bucket_is_a_few_numbers_whatever_the_listening():
    kept, bare = (AggregationState(allowed_lateness_ms=0, resolution_ms=D, item_sets=keep) for keep in (True, False))
    for state in (kept, bare):
        for i in range(50):
            state.apply_event(ListeningEvent(event_id=f"e{i}", user_id="u", ts=T0 + i, type="play",
                                             item_id=f"i{i}", genre=f"g{i % 7}", ms_played=10), PARTS[0])
    kept_row, bare_row = (s.buckets["u"][T0]["play"].to_row() for s in (kept, bare))
    assert kept_row[:2] == bare_row[:2] == [50, 500]
    assert (len(kept_row[2]), len(kept_row[3])) == (50, 7) and bare_row[2:] == [[], []]
