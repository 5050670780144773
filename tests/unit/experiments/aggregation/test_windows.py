"""Pure window functions and the watermark, on hand-computed cases."""

from __future__ import annotations

import pytest

from experiments.aggregation.watermark import WatermarkTracker
from experiments.aggregation.windows import MetricEvent, contribution, measure_value, touches
from experiments.spec import Measure, Metric

F = 1_767_225_600_000  # first exposure
D = 86_400_000


def ev(i: int, ts: int, etype: str = "play", item: str | None = "i1", genre: str | None = "g1", ms: int = 0):
    return MetricEvent(f"e{i}", "u", ts, etype, item, genre, ms)


def metric(**kw) -> Metric:
    base = {"name": "m", "role": "success", "kind": "mean", "direction": "increase", "measure": "plays",
            "window": {"length": "7d"}}
    return Metric.model_validate({**base, **kw})


EVENTS = [
    ev(0, F - 7 * D - 1, ms=5),  # just before the CUPED pre-window
    ev(1, F - 7 * D, ms=7),  # first instant of the pre-window
    ev(2, F - 1, "skip"),
    ev(3, F, ms=100),  # first instant of [0, 7d)
    ev(4, F + D, "skip", item="i2"),
    ev(5, F + 7 * D - 1, ms=1000, item="i3", genre="g2"),
    ev(6, F + 7 * D, ms=9),  # first instant of day 7: retention, not the 7-day window
    ev(7, F + 8 * D, "session_start", item=None, genre=None),  # retention window has ended
]


@pytest.mark.parametrize(
    ("measure", "lo", "hi", "value"),
    [
        ("plays", F, F + 7 * D, 2.0),
        ("skips", F, F + 7 * D, 1.0),
        ("events", F, F + 7 * D, 3.0),
        ("ms_played", F, F + 7 * D, 1100.0),
        ("ms_played", F - 7 * D, F, 7.0),
        ("active", F + 7 * D, F + 8 * D, 1.0),
        ("active", F + 8 * D + 1, F + 9 * D, 0.0),
        ("distinct_items", F, F + 7 * D, 3.0),
        ("distinct_genres", F, F + 7 * D, 2.0),
        ("distinct_items", F + 8 * D, F + 9 * D, 0.0),  # a session start names no item
    ],
)
def test_measures_over_half_open_windows(measure, lo, hi, value):
    assert measure_value(Measure.model_validate(measure), EVENTS, lo, hi) == value


def test_contributions_of_each_kind():
    assert contribution(metric(), EVENTS, F) == (2.0, None, None)
    cuped = metric(measure="ms_played", covariate={"length": "7d"})
    assert contribution(cuped, EVENTS, F) == (1100.0, None, 7.0)
    retention = metric(kind="proportion", measure="active", window={"delay": "7d", "length": "1d"},
                       role="guardrail", margin=0.01)
    assert contribution(retention, EVENTS, F) == (1.0, None, None)
    ratio = metric(kind="ratio", measure=None, numerator="skips", denominator="events")
    assert contribution(ratio, EVENTS, F) == (1.0, 3.0, None)


def test_touches_reads_window_pre_window_and_event_type():
    cuped = metric(covariate={"length": "1d"})
    assert touches(cuped, F, "play", F)
    assert touches(cuped, F, "play", F - D)
    assert not touches(cuped, F, "play", F - D - 1)
    assert not touches(cuped, F, "play", F + 7 * D)
    assert not touches(cuped, F, "skip", F + 1)  # plays do not read skips


def test_watermark_is_the_slowest_partition_and_never_goes_back():
    w = WatermarkTracker(allowed_lateness_ms=5)
    w.observe(("a", 0), 100)
    assert (w.watermark, w.closed_upto) == (100, 95)
    w.observe(("a", 1), 50)  # a new partition cannot reopen closed windows
    assert w.watermark == 100
    w.observe(("a", 1), 300)
    w.observe(("a", 0), 90)  # older than what the partition already showed
    assert w.watermark == 100
    w.observe(("a", 0), 200)
    assert w.watermark == 200
    w.declare(("b", 0))
    w.observe(("a", 0), 1000)
    assert w.watermark == 200  # b has delivered nothing yet
    with pytest.raises(ValueError, match="allowed_lateness_ms"):
        WatermarkTracker(allowed_lateness_ms=-1)
