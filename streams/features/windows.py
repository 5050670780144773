"""Sliding-window features computed from retained event entries, as of one event time.

An *entry* is the compact, JSON-native record the state keeps per accepted event
(see ``streams.features.state``): ``[ts, code]``, plus ``ms_played`` for skips and
``ms_played, genre, item_id`` for plays. Codes are the ``CODES`` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from streams.events import EventType
from streams.features.config import (
    DAY_MS,
    HOUR_MS,
    NO_RECENT_PLAY_S,
    WEEK_MS,
    FeatureConfig,
    affinity_name,
    default_features,
)

PLAY, SKIP, LIKE, SESSION_START, SESSION_END = 0, 1, 2, 3, 4

#: Event type -> entry code. New event types need a code here (and a decision about features).
CODES: dict[EventType, int] = {
    EventType.PLAY: PLAY,
    EventType.SKIP: SKIP,
    EventType.LIKE: LIKE,
    EventType.SESSION_START: SESSION_START,
    EventType.SESSION_END: SESSION_END,
}


def compute_features(
    entries: Iterable[Sequence[Any]], as_of_ts: int, config: FeatureConfig
) -> dict[str, int | float]:
    """Every feature over the windows ``(as_of_ts - length, as_of_ts]``, in one pass.

    - ``plays_<w>``, ``skips_<w>``: counts of play / skip events;
    - ``ms_played_<w>``: sum of ``ms_played`` over plays and skips;
    - ``skip_rate_<w>``: skips / (plays + skips), 0.0 when both are 0;
    - ``affinity_<genre>_7d``: share of the 7-day plays whose genre is ``genre``;
    - ``seconds_since_last_play``: ``as_of_ts`` minus the newest play in 7 days, in seconds,
      or 604800.0 (a week) when there is none;
    - ``sessions_24h``: count of session_start events;
    - ``distinct_items_7d``: number of distinct item_ids among the 7-day plays.
    """
    c1, c24, c7 = as_of_ts - HOUR_MS, as_of_ts - DAY_MS, as_of_ts - WEEK_MS
    p1 = p24 = p7 = s1 = s24 = s7 = m1 = m24 = m7 = sessions = 0
    last_play = -1
    genres: dict[str | None, int] = {}
    items: set[str] = set()
    for entry in entries:
        ts = entry[0]
        if ts > as_of_ts or ts <= c7:
            continue
        code = entry[1]
        if code == PLAY:
            played = entry[2]
            p7 += 1
            m7 += played
            if ts > c24:
                p24 += 1
                m24 += played
                if ts > c1:
                    p1 += 1
                    m1 += played
            genre = entry[3]
            genres[genre] = genres.get(genre, 0) + 1
            items.add(entry[4])
            if ts > last_play:
                last_play = ts
        elif code == SKIP:
            played = entry[2]
            s7 += 1
            m7 += played
            if ts > c24:
                s24 += 1
                m24 += played
                if ts > c1:
                    s1 += 1
                    m1 += played
        elif code == SESSION_START and ts > c24:
            sessions += 1
    plays, skips, ms = (p1, p24, p7), (s1, s24, s7), (m1, m24, m7)

    out = default_features(config)
    for i, window in enumerate(("1h", "24h", "7d")):
        out[f"plays_{window}"] = plays[i]
        out[f"skips_{window}"] = skips[i]
        out[f"ms_played_{window}"] = ms[i]
        total = plays[i] + skips[i]
        out[f"skip_rate_{window}"] = skips[i] / total if total else 0.0
    if plays[2]:
        for genre in config.top_genres:
            out[affinity_name(genre)] = genres.get(genre, 0) / plays[2]
    out["seconds_since_last_play"] = (
        (as_of_ts - last_play) / 1000.0 if last_play >= 0 else NO_RECENT_PLAY_S
    )
    out["sessions_24h"] = sessions
    out["distinct_items_7d"] = len(items)
    return out
