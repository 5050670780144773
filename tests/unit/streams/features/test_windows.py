"""The feature state against a brute-force recomputation from the accepted events."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import EventType, ListeningEvent
from streams.features import (
    ApplyOutcome,
    FeatureConfig,
    FeatureError,
    InvalidState,
    LateEvent,
    UserFeatureState,
    default_features,
    feature_names,
)

BASE = 1_767_225_600_000
MINUTE = 60_000
HOUR, DAY, WEEK = 60 * MINUTE, 24 * 60 * MINUTE, 7 * 24 * 60 * MINUTE
CONFIG = FeatureConfig(top_genres=("jazz", "hip_hop", "rock"), allowed_lateness_ms=10 * MINUTE)
GENRES = [None, "jazz", "Jazz", "hip-hop", "Hip Hop", "rock", "polka"]


def oracle_features(accepted: list[ListeningEvent], as_of: int, config: FeatureConfig) -> dict:
    """Every feature by brute force, one window at a time, straight from the definitions."""

    def within(event: ListeningEvent, length: int) -> bool:
        return as_of - length < event.ts <= as_of

    out: dict = {}
    windows = {"1h": HOUR, "24h": DAY, "7d": WEEK}
    for name, length in windows.items():
        plays = [e for e in accepted if e.type is EventType.PLAY and within(e, length)]
        skips = [e for e in accepted if e.type is EventType.SKIP and within(e, length)]
        out[f"plays_{name}"] = len(plays)
        out[f"skips_{name}"] = len(skips)
        out[f"ms_played_{name}"] = sum(e.ms_played for e in plays + skips)
        out[f"skip_rate_{name}"] = len(skips) / (len(plays) + len(skips)) if plays or skips else 0.0
    week_plays = [e for e in accepted if e.type is EventType.PLAY and within(e, WEEK)]
    for genre in config.top_genres:
        same = [
            e for e in week_plays
            if e.genre is not None and e.genre.lower().replace("-", "_").replace(" ", "_") == genre
        ]
        out[f"affinity_{genre}_7d"] = len(same) / len(week_plays) if week_plays else 0.0
    last = max((e.ts for e in week_plays), default=None)
    out["seconds_since_last_play"] = (as_of - last) / 1000 if last is not None else WEEK / 1000
    out["sessions_24h"] = sum(
        1 for e in accepted if e.type is EventType.SESSION_START and within(e, DAY)
    )
    out["distinct_items_7d"] = len({e.item_id for e in week_plays})
    return out


def assert_same_features(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert type(got[name]) is type(value), name
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def event(i: int, ts: int, kind: EventType, item: int = 0, genre: str | None = None,
          ms: int = 0, user: str = "u1") -> ListeningEvent:
    item_id = f"i{item}" if kind in (EventType.PLAY, EventType.SKIP, EventType.LIKE) else None
    return ListeningEvent(event_id=f"e{i}", user_id=user, ts=ts, type=kind, item_id=item_id,
                          genre=genre, ms_played=ms)


new_step = st.tuples(
    st.just("new"),
    st.one_of(st.just(0), st.sampled_from([1, 10, 11, 59, 60, 61, 1439, 1440, 1441, 10079, 10080]),
              st.integers(0, 3000)),  # how far the producer's clock moves, minutes
    st.integers(0, 25),  # how far behind that clock this event is, minutes (lateness: 10)
    st.sampled_from(list(EventType)),
    st.integers(0, 5),
    st.sampled_from(GENRES),
    st.integers(0, 300_000),
)
dup_step = st.tuples(st.just("dup"), st.integers(0, 10_000))
steps = st.lists(st.one_of(new_step, new_step, dup_step), min_size=1, max_size=40)


@settings(deadline=None, max_examples=300)
@given(steps=steps, roundtrips=st.lists(st.booleans(), min_size=40, max_size=40),
       extra_minutes=st.sampled_from([0, 1, 60, 61, 1440, 10079, 10080, 20000]))
def test_state_matches_brute_force(steps, roundtrips, extra_minutes):
    state = UserFeatureState("u1", config=CONFIG)
    clock = BASE
    sent: list[ListeningEvent] = []
    accepted: list[ListeningEvent] = []
    newest = None
    for n, step in enumerate(steps):
        if step[0] == "dup":
            if not sent:
                continue
            ev = sent[step[1] % len(sent)]
        else:
            _, advance, behind, kind, item, genre, ms = step
            clock += advance * MINUTE
            ev = event(len(sent), clock - behind * MINUTE, kind, item, genre, ms)
        sent.append(ev)

        accepted_ids = {e.event_id: e.ts for e in accepted}
        result = state.apply(ev)
        if ev.event_id not in accepted_ids and (newest is None or ev.ts >= newest - CONFIG.allowed_lateness_ms):
            assert result.outcome is ApplyOutcome.ACCEPTED
            accepted.append(ev)
            newest = ev.ts if newest is None else max(newest, ev.ts)
        elif ev.event_id in accepted_ids and accepted_ids[ev.event_id] > newest - WEEK:
            assert result.outcome is ApplyOutcome.DUPLICATE
        elif ev.event_id not in accepted_ids:
            assert result.outcome is ApplyOutcome.LATE
            assert isinstance(result.error(), LateEvent)
            assert "allowed lateness" in result.reason
        else:
            assert not result.accepted

        # bounded: exactly the accepted events of the last week are kept
        assert state.newest_ts == newest
        if newest is not None:
            kept = {e.event_id for e in accepted if e.ts > newest - WEEK}
            assert set(state.to_dict()["e"]) == kept
            assert_same_features(state.features(), oracle_features(accepted, newest, CONFIG))
        if roundtrips[n % len(roundtrips)]:
            state = UserFeatureState.from_dict(json.loads(json.dumps(state.to_dict())), config=CONFIG)

    if newest is not None:
        as_of = newest + extra_minutes * MINUTE
        assert_same_features(state.features(as_of), oracle_features(accepted, as_of, CONFIG))


def test_empty_state_gives_defaults_and_no_row():
    state = UserFeatureState("u1", config=CONFIG)
    assert state.features() == default_features(CONFIG)
    assert list(default_features(CONFIG)) == list(feature_names(CONFIG))
    with pytest.raises(FeatureError, match="no event"):
        state.feature_row()


def test_late_event_is_rejected_with_a_reason_and_changes_nothing():
    state = UserFeatureState("u1", config=CONFIG)
    assert state.apply(event(1, BASE, EventType.PLAY, ms=1000)).accepted
    before = json.dumps(state.to_dict())
    within = event(2, BASE - 10 * MINUTE, EventType.SKIP)  # exactly at the lateness bound
    too_late = event(3, BASE - 10 * MINUTE - 1, EventType.PLAY)
    assert state.apply(within).accepted
    result = state.apply(too_late)
    assert result.outcome is ApplyOutcome.LATE
    assert result.reason == (
        f"ts: {BASE - 600_001} is 600001 ms behind the user's newest event time {BASE}, "
        "over the allowed lateness of 600000 ms"
    )
    assert "e3" not in state and len(state) == 2 and json.dumps(state.to_dict()) != before


def test_window_edges_are_half_open():
    state = UserFeatureState("u1", config=CONFIG)
    state.apply(event(1, BASE, EventType.PLAY, item=1, genre="jazz", ms=5))
    state.apply(event(2, BASE + HOUR, EventType.PLAY, item=2, genre="rock", ms=7))
    f = state.features()
    assert (f["plays_1h"], f["plays_24h"], f["ms_played_1h"], f["ms_played_24h"]) == (1, 2, 7, 12)
    assert f["affinity_jazz_7d"] == 0.5 and f["distinct_items_7d"] == 2
    assert state.features(BASE + WEEK)["plays_7d"] == 1
    assert state.features(BASE + HOUR + WEEK)["seconds_since_last_play"] == WEEK / 1000


def test_misuse_is_refused():
    state = UserFeatureState("u1", config=CONFIG)
    state.apply(event(1, BASE, EventType.PLAY))
    with pytest.raises(FeatureError, match="user_id"):
        state.apply(event(2, BASE, EventType.PLAY, user="u2"))
    with pytest.raises(FeatureError, match="as_of_ts"):
        state.features(BASE - 1)
    for bad in ([], {"v": 2}, {"v": 1, "u": "u1", "t": "x", "e": {}}, {"v": 1, "u": "u1", "t": 1}):
        with pytest.raises(InvalidState):
            UserFeatureState.from_dict(bad)
    with pytest.raises(FeatureError, match="top_genres"):
        FeatureConfig(top_genres=("Hip Hop",))
    with pytest.raises(FeatureError, match="allowed_lateness_ms"):
        FeatureConfig(allowed_lateness_ms=-1)


def test_feature_row_carries_the_true_event_time():
    state = UserFeatureState("u1", config=CONFIG)
    state.apply(event(1, BASE + 123, EventType.PLAY))
    row = state.feature_row()
    assert row["user_id"] == "u1"
    assert int(row["event_timestamp"].timestamp() * 1000) == BASE + 123
    assert row["event_timestamp"].tzinfo is not None
    assert set(row) == {"user_id", "event_timestamp", *feature_names(CONFIG)}


def test_eviction_reaches_past_an_out_of_order_neighbour():
    state = UserFeatureState("u1", config=CONFIG)
    state.apply(event(1, BASE, EventType.PLAY))
    state.apply(event(2, BASE - 5 * MINUTE, EventType.PLAY))  # late but within lateness
    state.apply(event(3, BASE + WEEK - 3 * MINUTE, EventType.SKIP))  # cutoff between e2 and e1
    assert set(state.to_dict()["e"]) == {"e1", "e3"}
    assert state.apply(event(1, BASE, EventType.PLAY)).outcome is ApplyOutcome.DUPLICATE
    assert state.apply(event(2, BASE - 5 * MINUTE, EventType.PLAY)).outcome is ApplyOutcome.LATE


def test_rows_get_strictly_newer_when_a_late_event_changes_the_features():
    state = UserFeatureState("u1", config=CONFIG)
    state.apply(event(1, BASE, EventType.PLAY))
    first = state.feature_row()["event_timestamp"]
    state.apply(event(2, BASE - MINUTE, EventType.PLAY))  # late, accepted: newest unchanged
    second = state.feature_row()["event_timestamp"]
    assert second - first == timedelta(microseconds=1)
    state = UserFeatureState.from_dict(json.loads(json.dumps(state.to_dict())), config=CONFIG)
    state.apply(event(3, BASE + 1, EventType.SKIP))
    assert state.feature_row()["event_timestamp"] == first + timedelta(milliseconds=1)
    assert state.feature_row(BASE + HOUR)["event_timestamp"] == first + timedelta(hours=1)
