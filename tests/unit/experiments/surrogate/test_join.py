"""Delayed outcomes: any arrival order of the same exposures and events gives the same rows and model."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.surrogate import (
    DEFAULT_ATTRIBUTION_WINDOW_MS,
    OutcomeJoin,
    RefitSchedule,
    RollingOutcomeJoin,
    fit_surrogate,
)
from streams.events import ListeningEvent

T = 1_767_830_400_000
DAY = 86_400_000
GENRES = ("pop", "rock", "jazz", "latin")


def history(users: int, seed: int) -> list[tuple[str, object]]:
    """Exposures (some repeated later, some duplicated) and events over five weeks for ``users`` users."""
    rng = random.Random(seed)
    records: list[tuple[str, object]] = []
    for u in range(users):
        user = f"u{u}"
        anchor = T + rng.randrange(3 * DAY)
        variant = rng.choice(("control", "treatment"))
        records.append(("exposure", (f"x{u}", "exp", variant, user, anchor)))
        records.append(("exposure", (f"x{u}-later", "exp", variant, user, anchor + rng.randrange(1, 5 * DAY))))
        for k in range(rng.randrange(1, 12)):
            ts = anchor + rng.randrange(-2 * DAY, 35 * DAY)
            kind = rng.choice(("play", "play", "skip", "session_start"))
            genre = rng.choice(GENRES) if kind != "session_start" else None
            records.append(("event", ListeningEvent(
                event_id=f"{user}-e{k}", user_id=user, ts=ts, type=kind, genre=genre,
                item_id=None if genre is None else f"{genre}-{k}", ms_played=rng.randrange(60_000) if genre else 0)))
    return records


def replay(records: list[tuple[str, object]]) -> OutcomeJoin:
    join = OutcomeJoin()
    for kind, record in records:
        if kind == "exposure":
            join.add_exposure(*record)  # type: ignore[misc]
        else:
            join.add_event(record)  # type: ignore[arg-type]
    return join


RECORDS = history(40, seed=11)
WATERMARK = T + 40 * DAY


@settings(max_examples=40, deadline=None)
@given(st.permutations(RECORDS), st.lists(st.sampled_from(RECORDS), max_size=20))
def test_any_arrival_order_with_duplicates_gives_the_same_rows_and_model(
    order: list[tuple[str, object]], duplicates: list[tuple[str, object]],
) -> None:
    reference = replay(RECORDS).rows(watermark=WATERMARK)
    rows = replay([*order, *duplicates]).rows(watermark=WATERMARK)
    assert rows == reference
    assert fit_surrogate(rows) == fit_surrogate(reference)


def test_the_first_exposure_anchors_and_an_outcome_is_pending_until_its_interval_closes() -> None:
    join = OutcomeJoin()
    join.add_exposure("late", "exp", "treatment", "u1", T + DAY)
    assert join.add_exposure("first", "exp", "treatment", "u1", T)
    assert not join.add_exposure("first", "exp", "treatment", "u1", T)  # a duplicate id
    join.add_event(ListeningEvent(event_id="r", user_id="u1", ts=T + 7 * DAY + 1, type="session_start"))
    assert join.pending(T + 8 * DAY - 1) == 1 and join.rows(watermark=T + 8 * DAY - 1) == []
    [row] = join.rows(watermark=T + 8 * DAY)
    assert (row.unit, row.variant, row.outcome) == ("u1", "treatment", 1.0)  # day 7 counted from the first


def test_the_outcome_interval_must_lie_inside_the_attribution_window() -> None:
    join = OutcomeJoin(outcome_delay_ms=27 * DAY, outcome_length_ms=DAY, attribution_window_ms=28 * DAY)
    join.add_exposure("x", "exp", "control", "u", T)
    join.add_event(ListeningEvent(event_id="after", user_id="u", ts=T + 28 * DAY, type="session_start"))
    [row] = join.rows(watermark=T + 30 * DAY)
    assert row.outcome == 0.0  # the window ends at 28 d: a later return is not this exposure's outcome
    join.add_event(ListeningEvent(event_id="in", user_id="u", ts=T + 28 * DAY - 1, type="session_start"))
    assert join.rows(watermark=T + 30 * DAY)[0].outcome == 1.0
    assert DEFAULT_ATTRIBUTION_WINDOW_MS == 28 * DAY
    with pytest.raises(ValueError, match="attribution_window_ms"):
        OutcomeJoin(outcome_delay_ms=28 * DAY, outcome_length_ms=DAY)


def test_the_surrogate_refits_on_an_event_time_schedule() -> None:
    join = replay(RECORDS)
    schedule = RefitSchedule(join, every_ms=DAY, min_rows=10)
    assert schedule.maybe_refit(T) is None  # nothing closed yet
    first = schedule.maybe_refit(WATERMARK)
    assert first is not None and first.fitted_at == WATERMARK and first.n == 40
    assert schedule.maybe_refit(WATERMARK + DAY - 1) is None  # not due
    assert schedule.maybe_refit(WATERMARK + DAY) is not None


# ---- the rolling join: OutcomeJoin's rows, state bounded by event time -------------------------------
LATENESS = 3 * DAY


def months_of_records(users: int, days: int, seed: int) -> list[tuple[int, str, object]]:
    """(event time, kind, record): users exposed over ``days`` days (some twice, some in two experiments),
    each with events from before their exposure to weeks after it."""
    rng = random.Random(seed)
    records: list[tuple[int, str, object]] = []
    for u in range(users):
        user = f"u{u}"
        for experiment in ("exp", "other")[: rng.choice((1, 1, 2))]:
            anchor = T + rng.randrange((days - 10) * DAY)
            variant = rng.choice(("control", "treatment"))
            records.append((anchor, "exposure", (f"{experiment}-{user}", experiment, variant, user, anchor)))
            later = anchor + rng.randrange(1, 3 * DAY)
            records.append((later, "exposure", (f"{experiment}-{user}-later", experiment, variant, user, later)))
        for k in range(rng.randrange(5, 40)):
            ts = T + rng.randrange(days * DAY)
            kind = rng.choice(("play", "play", "skip", "session_start"))
            genre = rng.choice(GENRES) if kind != "session_start" else None
            records.append((ts, "event", ListeningEvent(
                event_id=f"{user}-e{k}", user_id=user, ts=ts, type=kind, genre=genre,
                item_id=None if genre is None else f"{genre}-{k}", ms_played=rng.randrange(60_000) if genre else 0)))
    return records


def feed(join: OutcomeJoin | RollingOutcomeJoin, kind: str, record: object) -> bool:
    if kind == "exposure":
        return join.add_exposure(*record)  # type: ignore[misc]
    return join.add_event(record)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_the_rolling_join_gives_the_rows_of_the_whole_join_at_every_refit_while_records_are_in_lateness(
    seed: int,
) -> None:
    days, delay = 60, LATENESS - DAY
    rng = random.Random(seed)
    records = months_of_records(120, days, seed)
    # each record arrives up to two days after its event time: many after a watermark that passed them
    arrivals = sorted(records, key=lambda r: r[0] + rng.randrange(delay))
    rolling, fed = RollingOutcomeJoin(allowed_lateness_ms=LATENESS), []
    newest, next_refit, refits, behind = 0, T + DAY, 0, 0
    for ts, kind, record in arrivals:
        if newest >= next_refit:  # a refit at the newest event time seen, as the follower's
            watermark = next_refit
            whole = OutcomeJoin()
            for _, k, r in fed:
                feed(whole, k, r)
            assert rolling.rows(watermark=watermark) == whole.rows(watermark=watermark)
            assert rolling.pending(watermark) == whole.pending(watermark)
            # bounded: only events a row not final reads, or of the last allowed lateness, are held
            assert (rolling.oldest_held_event() or watermark) >= watermark - LATENESS - rolling.close_after_ms
            next_refit, refits = next_refit + DAY, refits + 1
        behind += ts < next_refit - DAY  # arrives after a watermark that passed it
        assert feed(rolling, kind, record) or kind == "exposure"  # no event is late (ids are unique)
        fed.append((ts, kind, record))
        newest = max(newest, ts)
    assert refits > 50 and behind > 1000 and rolling.late == 0
    events = sum(1 for _, kind, _ in records if kind == "event")
    assert rolling.held_events() < events / 3  # most of 60 days of events are no longer held


def test_a_record_later_than_the_allowed_lateness_is_counted_and_not_joined() -> None:
    join = RollingOutcomeJoin(allowed_lateness_ms=LATENESS)
    join.add_exposure("x1", "exp", "control", "u1", T)
    join.add_event(ListeningEvent(event_id="e1", user_id="u1", ts=T + 7 * DAY + 5, type="session_start"))
    join.add_event(ListeningEvent(event_id="far", user_id="u2", ts=T + 20 * DAY, type="session_start"))
    assert [r.outcome for r in join.rows(watermark=T + 9 * DAY)] == [1.0]  # u1's row, not final yet
    # below the watermark - lateness (T + 6 d) but read by u1's row, which is not final: joined
    assert join.add_event(ListeningEvent(event_id="e2", user_id="u1", ts=T + 60_000, type="play", item_id="i",
                                         genre="jazz", ms_played=10))
    assert not join.add_exposure("x2", "exp", "treatment", "u2", T + 5 * DAY)  # would anchor below it: late
    assert not join.add_event(ListeningEvent(event_id="e3", user_id="u3", ts=T + 5 * DAY, type="session_start"))
    assert join.late == 2
    [row] = join.rows(watermark=T + 12 * DAY)  # u1's row is final now: T + 8 d + 3 d lateness
    assert (row.unit, row.outcome, row.signals["plays"]) == ("u1", 1.0, 1.0)
    # an event of its window now: late, the final row unchanged
    assert not join.add_event(ListeningEvent(event_id="e4", user_id="u1", ts=T + DAY - 1, type="skip", item_id="i"))
    assert join.late == 3 and join.rows(watermark=T + 12 * DAY) == [row]
    assert not join.add_exposure("x1", "exp", "control", "u1", T)  # its own anchor again: no change, not late
    assert join.late == 3


def test_records_replayed_after_the_rows_closed_change_nothing() -> None:
    records = months_of_records(40, 30, seed=3)
    join = RollingOutcomeJoin(allowed_lateness_ms=LATENESS)
    for _, kind, record in sorted(records, key=lambda r: r[0]):
        feed(join, kind, record)
    before = join.rows(watermark=T + 30 * DAY)
    for _, kind, record in records:
        feed(join, kind, record)
    assert join.rows(watermark=T + 30 * DAY) == before and before


def test_signals_must_end_by_the_outcome_intervals_end() -> None:
    with pytest.raises(ValueError, match="signal_horizon_ms"):
        RollingOutcomeJoin(signal_horizon_ms=9 * DAY)
