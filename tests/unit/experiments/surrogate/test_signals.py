"""A unit's short-term signals and its day-7 retention, read from its events by event time."""

from __future__ import annotations

from experiments.surrogate import retention, short_term_signals
from streams.events import ListeningEvent

T = 1_767_830_400_000
DAY = 86_400_000


def event(i: int, ts: int, kind: str, genre: str | None = None, ms: int = 0) -> ListeningEvent:
    return ListeningEvent(event_id=f"e{i}", user_id="u", ts=ts, type=kind, genre=genre,
                          item_id=None if genre is None else f"{genre}-1", ms_played=ms)


def test_signals_count_only_the_first_day_after_the_anchor() -> None:
    events = [event(0, T - 1, "play", "rock", 1_000), event(1, T, "play", "jazz", 1_800_000),
              event(2, T + 5, "play", "jazz", 1_800_000), event(3, T + 9, "play", "pop", 0),
              event(4, T + 10, "skip", "rock", 5_000), event(5, T + DAY, "play", "latin", 9_000)]
    assert short_term_signals(events, T) == {"genres_discovered": 2.0, "plays": 3.0, "skips": 1.0,
                                             "listening_hours": 1.0}


def test_retention_is_any_event_in_day_seven() -> None:
    assert retention([event(0, T + 7 * DAY - 1, "session_start")], T) == 0.0
    assert retention([event(0, T + 7 * DAY, "session_start")], T) == 1.0
    assert retention([event(0, T + 8 * DAY, "session_start")], T) == 0.0
    assert retention([event(0, T + 28 * DAY, "session_start")], T, delay_ms=28 * DAY) == 1.0
