"""The aggregation core against an oracle that recomputes every metric from the full log.

The oracle sorts the accepted records, takes each user's first exposure by (ts, id),
recomputes every closed window from all of the user's events, and sums. The core sees the
same records one at a time, out of order, with duplicates and late records, and prunes as
the watermark moves; its statistics must equal the oracle's over exactly the records it accepted.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.aggregation.state import AggregationState
from experiments.aggregation.stats import SufficientStats, metric_record
from experiments.aggregation.windows import Contribution
from experiments.spec import ExperimentSpec, Measure, parse_spec
from streams.events import Exposure, ListeningEvent

T0 = 1_767_225_600_000
S = 1000  # the spec below measures in seconds so that hypothesis logs hit every boundary

SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": T0, "end": T0 + 10_000 * S, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "plays", "window": {"length": "10s"}},
        {"name": "ms", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "ms_played", "window": {"length": "10s"}, "covariate": {"length": "5s"}},
        {"name": "ret", "role": "guardrail", "kind": "proportion", "direction": "increase",
         "measure": {"agg": "active", "types": ["play", "like"]}, "window": {"delay": "10s", "length": "5s"},
         "margin": 0.01},
        {"name": "skip_rate", "role": "guardrail", "kind": "ratio", "direction": "decrease",
         "numerator": "skips", "denominator": {"agg": "count", "types": ["play", "skip"]},
         "window": {"length": "10s"}, "margin": 0.05},
        {"name": "items", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_items", "window": {"delay": "2s", "length": "6s"}},
        {"name": "genres", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_genres", "window": {"length": "3s"}, "covariate": {"length": "2s"}},
    ],
})
PARTITIONS = [("tandem.events", 0), ("tandem.events", 1), ("tandem.exposures", 0)]


# ---- the oracle ----------------------------------------------------------------------------
def oracle_value(measure: Measure, events: list[ListeningEvent], lo: int, hi: int) -> float:
    chosen = [
        e for e in events
        if lo <= e.ts < hi and (measure.types is None or e.type.value in {t.value for t in measure.types})
    ]
    return float({
        "count": len(chosen),
        "sum_ms_played": sum(e.ms_played for e in chosen),
        "active": int(bool(chosen)),
        "distinct_items": len({e.item_id for e in chosen if e.item_id}),
        "distinct_genres": len({e.genre for e in chosen if e.genre}),
    }[measure.agg])


def oracle(spec: ExperimentSpec, accepted: list, closed_upto: int | None, watermark: int) -> list[dict]:
    events: dict[str, ListeningEvent] = {}
    exposures: dict[str, Exposure] = {}
    for record in accepted:
        if isinstance(record, ListeningEvent):
            events.setdefault(record.event_id, record)
        elif record.experiment == spec.id:
            exposures.setdefault(record.exposure_id, record)
    by_user: dict[str, list[ListeningEvent]] = defaultdict(list)
    for e in sorted(events.values(), key=lambda e: (e.ts, e.event_id)):
        by_user[e.user_id].append(e)
    seen: dict[str, list[Exposure]] = defaultdict(list)
    for x in sorted(exposures.values(), key=lambda x: (x.ts, x.exposure_id)):
        seen[x.user_id].append(x)
    stats: dict[tuple[str, str], SufficientStats] = defaultdict(SufficientStats)
    exposed: dict[str, int] = defaultdict(int)
    multi: dict[str, int] = defaultdict(int)
    for user, xs in seen.items():
        first = xs[0]
        exposed[first.variant] += 1
        multi[first.variant] += len({x.variant for x in xs}) > 1
        for m in spec.metrics:
            lo, hi = first.ts + m.window.delay, first.ts + m.window.delay + m.window.length
            if closed_upto is None or hi > closed_upto:
                continue
            evs = by_user[user]
            if m.kind == "ratio":
                c = Contribution(oracle_value(m.numerator, evs, lo, hi), oracle_value(m.denominator, evs, lo, hi),
                                 None)
            else:
                pre = None
                if m.covariate:
                    pre = oracle_value(m.measure, evs, first.ts - m.covariate.length, first.ts)
                c = Contribution(oracle_value(m.measure, evs, lo, hi), None, pre)
            stats[(first.variant, m.name)].add(c)
    return [
        dict(metric_record(experiment=spec.id, variant=v.name, metric=m, stats=stats[(v.name, m.name)],
                           exposed=exposed[v.name], watermark_ts=watermark, late_records=0,
                           multi_variant_users=multi[v.name]), record_id="", late_records=0)
        for v in spec.variants for m in spec.metrics
    ]


# ---- generated logs ------------------------------------------------------------------------
raw_record = st.tuples(
    st.sampled_from(["event", "event", "exposure", "duplicate"]),
    st.sampled_from(["u0", "u1", "u2"]),
    st.integers(0, 50),  # jitter around the record's place in the log: out of order, some late
    st.sampled_from(["play", "play", "skip", "like", "session_start"]),
    st.sampled_from(["i0", "i1", "i2"]),
    st.sampled_from(["g0", "g1", None]),
    st.sampled_from([0, 1000, 30_000]),
    st.integers(0, 1),
    st.sampled_from(["a", "a", "b", "b", "zz", "unknown-exp"]),
)


def build_log(raws: list[tuple]) -> list[tuple[tuple[str, int], object]]:
    log: list[tuple[tuple[str, int], object]] = []
    for i, (kind, user, half_s, etype, item, genre, ms, part, variant) in enumerate(raws):
        ts = T0 + max(0, 3 * i + half_s - 40) * 500  # a clock of 1.5 s per record, jitter -20 s .. +5 s
        if kind == "duplicate" and log:
            log.append(log[half_s % len(log)])
        elif kind == "exposure":
            experiment = "nope" if variant == "unknown-exp" else "exp"
            log.append((PARTITIONS[2], Exposure(exposure_id=f"x{i}", experiment=experiment,
                                                variant=variant, user_id=user, ts=ts)))
        else:
            log.append((PARTITIONS[part], ListeningEvent(
                event_id=f"e{i}", user_id=user, ts=ts, type=etype,
                item_id=None if etype == "session_start" else item, genre=genre,
                ms_played=ms if etype == "play" else 0)))
    return log


def run(log, lateness: int):
    state = AggregationState(allowed_lateness_ms=lateness)
    state.register_spec(SPEC)
    for partition in PARTITIONS:
        state.declare_partition(partition)
    accepted, late, maxima = [], 0, dict.fromkeys(PARTITIONS)
    for partition, record in log:
        values = list(maxima.values())
        closed_before = None if None in values else min(values) - lateness
        if isinstance(record, ListeningEvent):
            reason = state.apply_event(record, partition)
        else:
            reason = state.apply_exposure(record, partition)
        if reason is None:
            accepted.append(record)
        elif reason.startswith("late"):
            late += 1
            assert closed_before is not None
            if isinstance(record, ListeningEvent):
                assert record.ts < closed_before
            else:
                assert record.ts + SPEC.min_end_offset <= closed_before
        else:
            assert record.experiment == "nope" or record.variant == "zz", reason
        if reason is None:  # a refused record moves no watermark
            maxima[partition] = max(record.ts, maxima[partition] or record.ts)
    return state, accepted, late, maxima


@settings(max_examples=300, deadline=None)
@given(
    raws=st.lists(raw_record, min_size=15, max_size=60),
    lateness=st.sampled_from([0, 1500, 4000, 30_000]),
)
def test_core_equals_oracle_over_accepted_records(raws, lateness):
    log = build_log(raws)
    state, accepted, late, maxima = run(log, lateness)
    values = list(maxima.values())
    watermark = None if None in values else min(values)
    closed_upto = None if watermark is None else watermark - lateness
    expected = oracle(SPEC, accepted, closed_upto, watermark or 0)
    got = state.metric_records("exp")
    assert [dict(r, record_id="", late_records=0) for r in got] == expected
    assert {r["late_records"] for r in got} == {late}
    for r in got:
        assert r["exposed"] == r["n"] + r["in_progress"]
        assert r["watermark_ts"] == (watermark or 0)


@settings(max_examples=100, deadline=None)
@given(raws=st.lists(raw_record, min_size=15, max_size=60), lateness=st.sampled_from([0, 4000]))
def test_replaying_the_log_changes_nothing(raws, lateness):
    log = build_log(raws)
    state, _, _, _ = run(log, lateness)
    before = state.metric_records("exp")
    for partition, record in log:
        if isinstance(record, ListeningEvent):
            reason = state.apply_event(record, partition)
        else:
            reason = state.apply_exposure(record, partition)
        # a replayed accepted record is a no-op; a rejected one is rejected again
        assert reason is None or reason.startswith(("late", "unknown", "variant"))
    after = state.metric_records("exp")
    strip = [dict(r, late_records=0, record_id="") for r in before]
    assert [dict(r, late_records=0, record_id="") for r in after] == strip


@settings(max_examples=100, deadline=None)
@given(raws=st.lists(raw_record, min_size=10, max_size=60))
def test_pruning_keeps_memory_bounded(raws):
    state, _, _, maxima = run(build_log(raws), 0)
    if None not in maxima.values():
        bound = min(maxima.values()) - SPEC.lookback
        assert all(e.ts >= bound for e in state.events.values())
