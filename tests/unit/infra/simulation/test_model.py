"""The user model: play probabilities, the return model, sessions, determinism."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.simulation.model import DAY_MS, HOUR_MS, ORIGIN_MS, ModelParams, Served, make_user, make_users, session
from streams.events import EventType, ListeningEvent

PARAMS = ModelParams()


def test_play_probability_is_highest_for_the_favourite_and_within_bounds() -> None:
    for user in make_users(PARAMS, users=50, seed=3):
        favourite = max(range(len(user.tastes)), key=user.tastes.__getitem__)
        assert user.play_probs[favourite] == max(user.play_probs) == PARAMS.play_max
        assert all(PARAMS.play_min <= p <= PARAMS.play_max for p in user.play_probs)
        ranked = sorted(range(len(user.tastes)), key=user.tastes.__getitem__)
        assert [user.play_probs[g] for g in ranked] == sorted(user.play_probs)


@given(activity=st.floats(-3, 3), genres=st.integers(0, 7), items=st.integers(0, 200))
def test_return_probability_grows_with_discovery(activity: float, genres: int, items: int) -> None:
    p = PARAMS.return_probability(activity, genres, items)
    assert 0.0 < p < 1.0
    assert PARAMS.return_probability(activity, genres + 1, items) > p
    assert PARAMS.return_probability(activity, genres, items + 1) > p
    assert PARAMS.return_probability(activity + 0.5, genres, items) > p


def test_a_return_shift_moves_only_the_returns_of_users_first_exposed_to_its_variant() -> None:
    harmful = ModelParams(return_shifts=(("exp", "treatment", -4.0),))
    assert harmful.return_shift({"exp": (ORIGIN_MS, "treatment")}) == -4.0
    assert harmful.return_shift({"exp": (ORIGIN_MS, "control")}) == 0.0 == harmful.return_shift({})
    returns = {}
    for variant in ("control", "treatment"):
        user = make_user(harmful, 2, 4)
        user.expose("exp", variant, user.start)
        list(session(harmful, user, user.start + DAY_MS + 3_600_000, 1, []))  # day 1: only decides to come back
        returns[variant] = user.slots[-1].p_active
    logit = math.log(returns["control"] / (1 - returns["control"]))
    assert math.isclose(returns["treatment"], 1 / (1 + math.exp(-(logit - 4.0))), rel_tol=1e-12)


def test_users_are_deterministic_from_the_seed() -> None:
    a, b, c = make_user(PARAMS, 7, 11), make_user(PARAMS, 7, 11), make_user(PARAMS, 8, 11)
    assert (a.tastes, a.start, a.offsets, a.activity) == (b.tastes, b.start, b.offsets, b.activity)
    assert a.tastes != c.tastes and a.user_id != c.user_id
    assert abs(sum(a.tastes) - 1.0) < 1e-9


def _run(user, ts: int, day: int, arm_for, num_items: int | None = None) -> tuple[list[int], list[ListeningEvent]]:
    events: list[ListeningEvent] = []
    asks = []
    run = session(PARAMS, user, ts, day, events)
    try:
        at = run.send(None)
        while True:
            asks.append(at)
            arm = arm_for(len(asks))
            at = run.send(None if arm is None else Served(arm, num_items))
    except StopIteration:
        pass
    return asks, events


def test_a_post_exposure_session_asks_for_each_recommendation_in_increasing_event_time() -> None:
    user = make_user(PARAMS, 1, 0)
    asks, events = _run(user, user.start, 0, lambda k: PARAMS.genres[k % 8])
    assert len(asks) == PARAMS.recs_per_session and asks == sorted(set(asks))
    for num_items in (1, 5):  # the first answer's num_items sets how many the session shows
        again = make_user(PARAMS, 1, 0)
        assert len(_run(again, again.start, 0, lambda k: PARAMS.genres[k % 8], num_items)[0]) == num_items
    assert events[0].type is EventType.SESSION_START and events[0].ts < asks[0]
    times = [e.ts for e in events]
    assert times == sorted(set(times))
    item_events = [e for e in events if e.type in (EventType.PLAY, EventType.SKIP)]
    assert len(item_events) >= PARAMS.recs_per_session
    for e in item_events[: PARAMS.recs_per_session]:
        assert e.item_id.startswith(f"{e.genre}-")
        assert (e.type is EventType.PLAY) == (e.ms_played >= PARAMS.play_ms[0])
    recs = [x for x in user.expected if x.arm is not None]
    assert [x.arm for x in recs] == [PARAMS.genres[k % 8] for k in range(1, 4)]
    assert len({e.event_id for e in events}) == len(events)


def test_pre_period_sessions_are_organic_and_failed_recommendations_are_lost() -> None:
    user = make_user(PARAMS, 1, 1)
    asks, events = _run(user, user.start - 3 * DAY_MS, -3, lambda k: "jazz")
    assert asks == [] and all(e.type in (EventType.SESSION_START, EventType.PLAY) for e in events)
    before = len(user.expected)
    asks, events = _run(user, user.start, 0, lambda k: None)
    assert len(asks) == PARAMS.recs_per_session
    assert [x.arm for x in user.expected[before:]] == [None]  # only the organic expectation


def test_same_seed_and_arms_give_the_same_events() -> None:
    runs = []
    for _ in range(2):
        user = make_user(PARAMS, 5, 2)
        runs.append(_run(user, user.start, 0, lambda k: "rock")[1])
    assert runs[0] == runs[1]


def test_every_day_of_a_user_lies_in_its_exposure_anchored_day() -> None:
    for user in make_users(PARAMS, users=200, seed=9):
        exposure = user.start + 1_000
        assert ORIGIN_MS <= user.start < ORIGIN_MS + PARAMS.arrival_ms
        for ts, day in user.slot_times(PARAMS):
            if day > 0:
                assert exposure + day * DAY_MS <= ts and ts + 3_600_000 < exposure + (day + 1) * DAY_MS
            if day < 0:
                assert exposure - 7 * DAY_MS <= ts < exposure


def test_the_default_run_ends_where_it_always_did_and_already_covers_day_7_retention() -> None:
    lateness, slack = 30 * 60_000, 2 * HOUR_MS
    assert PARAMS.post_days == 9
    assert PARAMS.horizon_ms() == ORIGIN_MS + DAY_MS + 8 * DAY_MS + lateness + slack
    assert PARAMS.covering(8 * DAY_MS) == PARAMS


def test_a_run_covering_day_28_retention_closes_its_interval_and_repeats_the_default_users() -> None:
    longer = PARAMS.covering(29 * DAY_MS)  # day-28 retention: [28 d, 29 d) after the first exposure
    assert longer.post_days == 30 and longer.covering(8 * DAY_MS) == longer
    for index in range(50):
        default, extended = make_user(PARAMS, 4, index), make_user(longer, 4, index)
        assert extended.start + 29 * DAY_MS < longer.horizon_ms()
        assert (extended.tastes, extended.activity, extended.start) == (default.tastes, default.activity, default.start)
        assert extended.offsets[:len(default.offsets)] == default.offsets
        assert len(extended.offsets) == len(default.offsets) + 21
        assert {day for _, day in extended.slot_times(longer)} >= set(range(-7, 29))
    with pytest.raises(ValueError, match="post_days"):
        ModelParams(post_days=8)  # would end before day-7 retention's interval closes


def test_everything_exported_is_importable() -> None:
    import infra.simulation as package

    for name in package.__all__:
        assert getattr(package, name) is not None
