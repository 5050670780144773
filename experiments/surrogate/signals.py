"""Short-term signals and the long-term outcome of one unit, from its listening events.

The signals are what can be observed within ``horizon_ms`` (a day by default) of the
unit's first exposure ``anchor``, in event time:

- ``genres_discovered``: distinct genres played in ``[anchor, anchor + horizon)``;
- ``plays`` and ``skips``: counts of play and skip events there;
- ``listening_hours``: hours played there (the session's length, summed over sessions).

The long-term outcome is retention: 1.0 when the unit has any event in
``[anchor + delay, anchor + delay + length)`` (day 7 by default: ``[7 d, 8 d)``, the
metric ``retention_d7`` of the specs), else 0.0.

>>> from streams.events import ListeningEvent
>>> T = 1767830400000
>>> events = [ListeningEvent(event_id="a", user_id="u", ts=T + 10, type="play", genre="jazz",
...                          item_id="jazz-1", ms_played=3_600_000),
...           ListeningEvent(event_id="b", user_id="u", ts=T + 7 * 86_400_000 + 5, type="session_start")]
>>> short_term_signals(events, T)
{'genres_discovered': 1.0, 'plays': 1.0, 'skips': 0.0, 'listening_hours': 1.0}
>>> retention(events, T)
1.0
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.events import EventType, ListeningEvent

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

#: The signals ``short_term_signals`` gives, in the order a surrogate uses them.
SIGNALS: tuple[str, ...] = ("genres_discovered", "plays", "skips", "listening_hours")


def short_term_signals(events: Iterable[ListeningEvent], anchor: int, *, horizon_ms: int = DAY_MS) -> dict[str, float]:
    """The unit's signals in ``[anchor, anchor + horizon_ms)`` (see the module docstring)."""
    genres: set[str] = set()
    plays = skips = 0
    ms = 0
    for event in events:
        if not anchor <= event.ts < anchor + horizon_ms:
            continue
        if event.type is EventType.PLAY:
            plays += 1
            ms += event.ms_played or 0
            if event.genre is not None:
                genres.add(event.genre)
        elif event.type is EventType.SKIP:
            skips += 1
    return {"genres_discovered": float(len(genres)), "plays": float(plays), "skips": float(skips),
            "listening_hours": ms / HOUR_MS}


def retention(events: Iterable[ListeningEvent], anchor: int, *, delay_ms: int = 7 * DAY_MS,
              length_ms: int = DAY_MS) -> float:
    """1.0 when the unit has any event in ``[anchor + delay, anchor + delay + length)``, else 0.0."""
    start = anchor + delay_ms
    return float(any(start <= event.ts < start + length_ms for event in events))
