"""Delayed outcomes: any arrival order of the same exposures and events gives the same rows and model."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.surrogate import DEFAULT_ATTRIBUTION_WINDOW_MS, OutcomeJoin, RefitSchedule, fit_surrogate
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
