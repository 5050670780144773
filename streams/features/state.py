"""Per-user feature state: apply events in event time, answer features as of an event time.

The state is one JSON-native dict (it lives as a Faust table value; never pickle)::

    {"v": 1, "u": user_id, "t": newest accepted event time (ms) or None,
     "r": events accepted since "t" last advanced (late ones, within the lateness),
     "e": {event_id: entry, ...}}   # entries in acceptance order, see windows.py

``from_dict`` adopts the dict without copying and ``to_dict`` hands back the live
dict, so a table round trip costs O(1) here; ``apply`` mutates it in place.
Entries older than 7 days before ``t`` are evicted, so the state is bounded by a
week of the user's events, and the event ids kept are exactly what dedupe needs:
a replayed event still inside the week is a duplicate, an older one is late.

>>> from streams.events import EventType, ListeningEvent
>>> state = UserFeatureState("u1")
>>> play = ListeningEvent(event_id="e1", user_id="u1", ts=1_767_225_600_000,
...                       type=EventType.PLAY, item_id="i1", genre="Jazz", ms_played=30_000)
>>> state.apply(play).outcome, state.apply(play).outcome
(<ApplyOutcome.ACCEPTED: 'accepted'>, <ApplyOutcome.DUPLICATE: 'duplicate'>)
>>> state.features()["affinity_jazz_7d"], state.features(1_767_225_660_000)["seconds_since_last_play"]
(1.0, 60.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from streams.events import ListeningEvent
from streams.features.config import DEFAULT_CONFIG, RETENTION_MS, FeatureConfig, normalize_genre
from streams.features.errors import FeatureError, InvalidState, LateEvent
from streams.features.windows import CODES, PLAY, SKIP, compute_features

STATE_VERSION = 1


class ApplyOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # already applied: nothing changed (idempotent replay)
    LATE = "late"  # beyond the allowed lateness: nothing changed, dead-letter it


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is ApplyOutcome.ACCEPTED

    def error(self) -> LateEvent | None:
        """The exception to record in a dead letter, for a late event; None otherwise."""
        return LateEvent(self.reason) if self.outcome is ApplyOutcome.LATE else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ACCEPTED = ApplyResult(ApplyOutcome.ACCEPTED)
_DUPLICATE = ApplyResult(ApplyOutcome.DUPLICATE, "event_id: already applied")


class UserFeatureState:
    """One user's retained events and newest event time; see the module docstring."""

    __slots__ = ("_data", "_entries", "_lateness", "config")

    def __init__(self, user_id: str, *, config: FeatureConfig = DEFAULT_CONFIG) -> None:
        self._adopt({"v": STATE_VERSION, "u": user_id, "t": None, "r": 0, "e": {}}, config)

    def _adopt(self, data: dict[str, Any], config: FeatureConfig) -> None:
        self._data = data
        self._entries: dict[str, list[Any]] = data["e"]
        self._lateness = config.allowed_lateness_ms
        self.config = config

    @classmethod
    def from_dict(cls, data: Any, *, config: FeatureConfig = DEFAULT_CONFIG) -> UserFeatureState:
        """Adopt a dict made by ``to_dict`` (possibly after a JSON round trip). No copy is made."""
        if not isinstance(data, dict):
            raise InvalidState(f"feature state: expected a dict, got {type(data).__name__}")
        if data.get("v") != STATE_VERSION:
            raise InvalidState(f"v: unsupported feature state version {data.get('v')!r}")
        if not isinstance(data.get("u"), str):
            raise InvalidState("u: the user id must be a string")
        newest = data.get("t")
        if newest is not None and (isinstance(newest, bool) or not isinstance(newest, int)):
            raise InvalidState(f"t: expected an int event time or null, got {newest!r}")
        if not isinstance(data.get("e"), dict):
            raise InvalidState("e: expected a dict of event_id -> entry")
        state = cls.__new__(cls)
        state._adopt(data, config)
        return state

    def to_dict(self) -> dict[str, Any]:
        """The live JSON-native dict (not a copy): serialize it, don't keep mutating it elsewhere."""
        return self._data

    @property
    def user_id(self) -> str:
        return self._data["u"]

    @property
    def newest_ts(self) -> int | None:
        """The newest accepted event time in ms, None before the first accepted event."""
        return self._data["t"]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._entries

    def __repr__(self) -> str:
        return f"UserFeatureState(user_id={self.user_id!r}, newest_ts={self.newest_ts}, events={len(self)})"

    def apply(self, event: ListeningEvent) -> ApplyResult:
        """Add one event, in event time; a duplicate or a too-late event changes nothing."""
        data = self._data
        if event.user_id != data["u"]:
            raise FeatureError(f"user_id: event for {event.user_id!r} applied to the state of {data['u']!r}")
        entries = self._entries
        event_id = event.event_id
        if event_id in entries:
            return _DUPLICATE
        ts = event.ts
        newest = data["t"]
        if newest is not None and ts < newest - self._lateness:
            return ApplyResult(
                ApplyOutcome.LATE,
                f"ts: {ts} is {newest - ts} ms behind the user's newest event time {newest}, "
                f"over the allowed lateness of {self._lateness} ms",
            )
        code = CODES[event.type]
        if code == PLAY:
            genre = event.genre
            entries[event_id] = [
                ts, code, event.ms_played, normalize_genre(genre) if genre else None, event.item_id,
            ]
        elif code == SKIP:
            entries[event_id] = [ts, code, event.ms_played]
        else:
            entries[event_id] = [ts, code]
        if newest is None or ts > newest:
            data["t"] = ts
            data["r"] = 0
            self._evict(ts - RETENTION_MS)
        else:
            data["r"] = data.get("r", 0) + 1
        return _ACCEPTED

    def _evict(self, cutoff: int) -> None:
        # Entries are in acceptance order, and an accepted event is never older than the newest
        # time at its acceptance minus the lateness; so once an entry is newer than
        # cutoff + lateness, every later one is newer than the cutoff.
        stop = cutoff + self._lateness
        stale = []
        for event_id, entry in self._entries.items():
            ts = entry[0]
            if ts <= cutoff:
                stale.append(event_id)
            elif ts > stop:
                break
        for event_id in stale:
            del self._entries[event_id]

    def features(self, as_of_ts: int | None = None) -> dict[str, int | float]:
        """Every feature as of ``as_of_ts`` (default: the newest event time), which may not be
        earlier than the newest event time: older events have been evicted."""
        newest = self._data["t"]
        if as_of_ts is None:
            as_of_ts = newest if newest is not None else 0
        elif newest is not None and as_of_ts < newest:
            raise FeatureError(f"as_of_ts: {as_of_ts} is before the newest event time {newest}")
        return compute_features(self._entries.values(), as_of_ts, self.config)

    def feature_row(self, as_of_ts: int | None = None) -> dict[str, Any]:
        """A row for the feature store: user_id, event_timestamp (aware UTC) and every feature.

        The timestamp is the as-of event time (default: the newest event time), so a user's rows
        are monotonic in it. A late event accepted within the lateness changes the features but
        not the newest event time; since the Redis online store drops writes whose timestamp is
        not newer, such a row carries the newest event time plus one microsecond per late event
        applied since (at most 999): every change is a strictly newer row, still inside the
        newest event's millisecond.
        """
        features = self.features(as_of_ts)
        newest = self.newest_ts
        ts = as_of_ts if as_of_ts is not None else newest
        if ts is None:
            raise FeatureError("feature_row: the state has no event yet, so no event time")
        bump_us = min(self._data.get("r", 0), 999) if ts == newest else 0
        return {
            "user_id": self.user_id,
            "event_timestamp": _EPOCH + timedelta(milliseconds=ts, microseconds=bump_us),
            **features,
        }
