"""What the feature logic computes: windows, top genres, allowed lateness, feature names.

>>> config = FeatureConfig(top_genres=("jazz", "hip_hop"))
>>> feature_names(config)[:4]
('plays_1h', 'plays_24h', 'plays_7d', 'skips_1h')
>>> default_features(config)["affinity_hip_hop_7d"], default_features(config)["seconds_since_last_play"]
(0.0, 604800.0)
>>> normalize_genre("Hip-Hop")
'hip_hop'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from streams.features.errors import FeatureError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

#: Window suffix -> length in ms. Every window is the half-open interval (as_of - length, as_of].
WINDOWS: dict[str, int] = {"1h": HOUR_MS, "24h": DAY_MS, "7d": WEEK_MS}

#: The state keeps exactly what the longest window needs.
RETENTION_MS = WEEK_MS

#: ``seconds_since_last_play`` when the user has no play in the last 7 days.
NO_RECENT_PLAY_S = WEEK_MS / 1000.0

DEFAULT_TOP_GENRES: tuple[str, ...] = (
    "pop", "rock", "hip_hop", "electronic", "jazz", "classical", "country", "latin",
)
DEFAULT_ALLOWED_LATENESS_MS = 5 * 60 * 1000
MAX_ALLOWED_LATENESS_MS = DAY_MS

_SLUG = re.compile(r"[a-z][a-z0-9_]{0,47}")


@lru_cache(maxsize=4096)
def normalize_genre(genre: str) -> str:
    """Genres compare case-insensitively, with ``-`` and spaces read as ``_``."""
    return genre.strip().casefold().replace("-", "_").replace(" ", "_")


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Plain parameters of the feature logic; the Feast schema is derived from them.

    ``allowed_lateness_ms`` is per user: an event older than the user's newest accepted
    event time minus this is rejected as late.
    """

    top_genres: tuple[str, ...] = DEFAULT_TOP_GENRES
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS

    def __post_init__(self) -> None:
        genres = tuple(self.top_genres)
        object.__setattr__(self, "top_genres", genres)
        for genre in genres:
            if not isinstance(genre, str) or not _SLUG.fullmatch(genre):
                raise FeatureError(
                    f"top_genres: {genre!r} must be a lower-case slug ([a-z][a-z0-9_]*, at most 48 chars)"
                )
        if len(set(genres)) != len(genres):
            raise FeatureError(f"top_genres: duplicates in {genres!r}")
        lateness = self.allowed_lateness_ms
        if isinstance(lateness, bool) or not isinstance(lateness, int):
            raise FeatureError(f"allowed_lateness_ms: expected an int, got {type(lateness).__name__}")
        if not 0 <= lateness <= MAX_ALLOWED_LATENESS_MS:
            raise FeatureError(
                f"allowed_lateness_ms: {lateness} is outside [0, {MAX_ALLOWED_LATENESS_MS}]"
            )


DEFAULT_CONFIG = FeatureConfig()


def affinity_name(genre: str) -> str:
    return f"affinity_{genre}_7d"


def default_features(config: FeatureConfig = DEFAULT_CONFIG) -> dict[str, int | float]:
    """Every feature name with its value for a user with no events; the type is the value's type."""
    return dict(_defaults(config))


@lru_cache(maxsize=64)
def _defaults(config: FeatureConfig) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for prefix in ("plays", "skips", "ms_played"):
        for window in WINDOWS:
            values[f"{prefix}_{window}"] = 0
    for window in WINDOWS:
        values[f"skip_rate_{window}"] = 0.0
    for genre in config.top_genres:
        values[affinity_name(genre)] = 0.0
    values["seconds_since_last_play"] = NO_RECENT_PLAY_S
    values["sessions_24h"] = 0
    values["distinct_items_7d"] = 0
    return values


def feature_names(config: FeatureConfig = DEFAULT_CONFIG) -> tuple[str, ...]:
    return tuple(_defaults(config))
