"""Delayed outcomes: exposures and listening events, in any order, into surrogate rows.

Each unit's first exposure to an experiment (smallest ``(ts, exposure_id)``) anchors it.
Its short-term signals are read from its events in ``[anchor, anchor + signal_horizon)``
and its long-term outcome from ``[anchor + outcome_delay, anchor + outcome_delay +
outcome_length)``: that outcome arrives weeks after the decision, in event time.

**Attribution window** (default ``DEFAULT_ATTRIBUTION_WINDOW_MS``, 28 days): an outcome
is attributed to an exposure only when it lies within that window after the anchor; the
outcome's interval must fit inside it (checked at construction). A unit becomes a
row once the watermark has passed the end of its outcome interval; until then it is
pending, never counted as a zero.

State is keyed by record id (exposures by ``exposure_id``, events by ``event_id``), so
a duplicate changes nothing, and ``rows`` is computed from the state sorted, so **any
arrival order of the same records gives the same rows and the same fitted surrogate**
(the property test checks it). A ``RefitSchedule`` refits every ``every_ms`` of event
time (never wall-clock time), from the rows closed so far.

``OutcomeJoin`` keeps every record it is given: right for a fit that reads the topics once.
A process that follows them for months uses ``RollingOutcomeJoin``: the same rows for
records that arrive within ``allowed_lateness_ms`` of the watermark, with state bounded by
that lateness and the outcome interval, not by the history.

>>> from streams.events import ListeningEvent
>>> T = 1767830400000
>>> join = OutcomeJoin()
>>> join.add_exposure("x1", "exp", "control", "u1", T)
True
>>> join.add_event(ListeningEvent(event_id="e1", user_id="u1", ts=T + 7 * 86_400_000, type="session_start"))
True
>>> join.rows(watermark=T + 8 * 86_400_000 - 1)
[]
>>> [(r.unit, r.outcome) for r in join.rows(watermark=T + 8 * 86_400_000)]
[('u1', 1.0)]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from experiments.surrogate.model import Surrogate, SurrogateRow, fit_surrogate
from experiments.surrogate.signals import DAY_MS, SIGNALS, retention, short_term_signals
from streams.events import ListeningEvent

DEFAULT_ATTRIBUTION_WINDOW_MS = 28 * DAY_MS


@dataclass(frozen=True, slots=True)
class _Exposure:
    ts: int
    exposure_id: str
    experiment: str
    variant: str
    unit: str


class Rows(Protocol):
    """What a ``RefitSchedule`` reads: the rows closed by a watermark, and the units still pending."""

    def rows(self, *, watermark: int) -> list[SurrogateRow]: ...
    def pending(self, watermark: int) -> int: ...


class _Windows:
    """The windows of a row, from its anchor: signals, then the outcome inside the attribution window."""

    def __init__(
        self, *, signal_horizon_ms: int = DAY_MS, outcome_delay_ms: int = 7 * DAY_MS,
        outcome_length_ms: int = DAY_MS, attribution_window_ms: int = DEFAULT_ATTRIBUTION_WINDOW_MS,
    ) -> None:
        if min(signal_horizon_ms, outcome_length_ms) <= 0 or outcome_delay_ms < 0:
            raise ValueError("signal_horizon_ms and outcome_length_ms must be > 0, outcome_delay_ms >= 0")
        if outcome_delay_ms + outcome_length_ms > attribution_window_ms:
            raise ValueError(
                f"attribution_window_ms: {attribution_window_ms} is shorter than the outcome interval's end "
                f"({outcome_delay_ms + outcome_length_ms} ms after the exposure)")
        self.signal_horizon_ms = signal_horizon_ms
        self.outcome_delay_ms = outcome_delay_ms
        self.outcome_length_ms = outcome_length_ms
        self.attribution_window_ms = attribution_window_ms
        #: A row closes once the watermark has passed its outcome interval's end, this long after its anchor.
        self.close_after_ms = outcome_delay_ms + outcome_length_ms

    def _row(self, anchor: _Exposure, events: Iterable[ListeningEvent]) -> SurrogateRow:
        within = [e for e in events if anchor.ts <= e.ts < anchor.ts + self.attribution_window_ms]
        signals = short_term_signals(within, anchor.ts, horizon_ms=self.signal_horizon_ms)
        outcome = retention(within, anchor.ts, delay_ms=self.outcome_delay_ms, length_ms=self.outcome_length_ms)
        return SurrogateRow(anchor.experiment, anchor.variant, anchor.unit, signals, outcome)


class OutcomeJoin(_Windows):
    """Exposures and events by id; rows for the units whose outcome interval has closed (module doc)."""

    def __init__(self, **windows: int) -> None:
        """``windows``: those of ``_Windows``."""
        super().__init__(**windows)
        self._exposures: dict[str, _Exposure] = {}
        self._events: dict[str, dict[str, ListeningEvent]] = {}  # unit -> event id -> event

    def add_exposure(self, exposure_id: str, experiment: str, variant: str, unit: str, ts: int) -> bool:
        """Remember an exposure; False for a duplicate id."""
        if exposure_id in self._exposures:
            return False
        self._exposures[exposure_id] = _Exposure(ts, exposure_id, experiment, variant, unit)
        return True

    def add_event(self, event: ListeningEvent) -> bool:
        """Remember a listening event; False for a duplicate id."""
        events = self._events.setdefault(event.user_id, {})
        if event.event_id in events:
            return False
        events[event.event_id] = event
        return True

    def _anchors(self) -> dict[tuple[str, str], _Exposure]:
        first: dict[tuple[str, str], _Exposure] = {}
        for exposure in self._exposures.values():
            key = (exposure.experiment, exposure.unit)
            held = first.get(key)
            if held is None or (exposure.ts, exposure.exposure_id) < (held.ts, held.exposure_id):
                first[key] = exposure
        return first

    def pending(self, watermark: int) -> int:
        """Units exposed whose outcome interval has not closed by ``watermark``."""
        return sum(1 for a in self._anchors().values() if a.ts + self.close_after_ms > watermark)

    def rows(self, *, watermark: int) -> list[SurrogateRow]:
        """A row per (experiment, unit) whose outcome interval ended by ``watermark``, sorted."""
        return [
            self._row(anchor, self._events.get(unit, {}).values())
            for (_, unit), anchor in sorted(self._anchors().items())
            if anchor.ts + self.close_after_ms <= watermark
        ]


class RollingOutcomeJoin(_Windows):
    """``OutcomeJoin``'s rows with state bounded by event time, for a process that follows the topics.

    ``rows(watermark)`` moves the join to that watermark. A row whose outcome interval ended
    ``allowed_lateness_ms`` before it is final: computed once and kept, its events no longer
    held for it. An event older than ``watermark - allowed_lateness_ms`` is held only while a row
    not final yet reads it (its unit anchored at or before it). A record older than that which no
    such row reads (an exposure that would anchor there, an event) is late: counted, not joined.

    So records that arrive within the allowed lateness give ``OutcomeJoin``'s rows (the tests
    check it), and the state holds the events of the last ``allowed_lateness_ms`` plus the
    outcome interval, the anchors of the rows not final, and a row per final unit.
    """

    def __init__(self, *, allowed_lateness_ms: int = DEFAULT_ATTRIBUTION_WINDOW_MS, **windows: int) -> None:
        """``windows``: those of ``_Windows``."""
        super().__init__(**windows)
        if allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms: must not be negative")
        if self.signal_horizon_ms > self.close_after_ms:
            raise ValueError("signal_horizon_ms: a row closes at its outcome interval's end, so its signals must "
                             f"end by then ({self.close_after_ms} ms after the exposure)")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.late = 0  # records refused as late
        self._watermark: int | None = None
        self._open: dict[str, dict[str, _Exposure]] = {}  # unit -> experiment -> anchor of a row not final
        self._final: dict[tuple[str, str], tuple[_Exposure, SurrogateRow]] = {}
        self._finalizing: list[tuple[int, str, str]] = []  # (when final, experiment, unit), stale after a re-anchor
        self._events: dict[str, dict[str, ListeningEvent]] = {}  # unit -> event id -> event

    @property
    def _bound(self) -> int | None:
        """Records older than this are late unless a row not final reads them."""
        return None if self._watermark is None else self._watermark - self.allowed_lateness_ms

    def held_events(self) -> int:
        return sum(len(events) for events in self._events.values())

    def oldest_held_event(self) -> int | None:
        """The event time of the oldest event held (None: none is)."""
        return min((e.ts for events in self._events.values() for e in events.values()), default=None)

    def add_exposure(self, exposure_id: str, experiment: str, variant: str, unit: str, ts: int) -> bool:
        """Join an exposure; False when it changes nothing (a duplicate, a later exposure) or is late."""
        final = self._final.get((experiment, unit))
        held = final[0] if final is not None else self._open.get(unit, {}).get(experiment)
        if held is not None and (held.ts, held.exposure_id) <= (ts, exposure_id):
            return False
        bound = self._bound
        if final is not None or bound is not None and ts < bound:
            self.late += 1  # it would anchor a row at a time whose events are no longer all held
            return False
        self._open.setdefault(unit, {})[experiment] = _Exposure(ts, exposure_id, experiment, variant, unit)
        heapq.heappush(self._finalizing, (ts + self.close_after_ms + self.allowed_lateness_ms, experiment, unit))
        return True

    def add_event(self, event: ListeningEvent) -> bool:
        """Hold a listening event; False for a duplicate id, or when it is late."""
        unit = event.user_id
        events = self._events.get(unit)
        if events is not None and event.event_id in events:
            return False
        bound = self._bound
        if bound is not None and event.ts < bound and not self._read_by_open_row(unit, event.ts):
            self.late += 1
            return False
        if events is None:
            events = self._events[unit] = {}
        events[event.event_id] = event
        return True

    def _read_by_open_row(self, unit: str, ts: int) -> bool:
        return any(anchor.ts <= ts for anchor in self._open.get(unit, {}).values())

    def pending(self, watermark: int) -> int:
        """Units exposed whose outcome interval has not closed by ``watermark``."""
        return sum(1 for anchors in self._open.values() for a in anchors.values()
                   if a.ts + self.close_after_ms > watermark)

    def rows(self, *, watermark: int) -> list[SurrogateRow]:
        """Move to ``watermark`` (never back); a row per (experiment, unit) whose outcome interval
        ended by it, sorted: the final ones as kept, the others from the events held."""
        self._advance(watermark)
        rows = [((experiment, unit), row) for (experiment, unit), (anchor, row) in self._final.items()
                if anchor.ts + self.close_after_ms <= watermark]
        rows += [((experiment, unit), self._row(anchor, self._events.get(unit, {}).values()))
                 for unit, anchors in self._open.items() for experiment, anchor in anchors.items()
                 if anchor.ts + self.close_after_ms <= watermark]
        return [row for _, row in sorted(rows, key=lambda keyed: keyed[0])]

    def _advance(self, watermark: int) -> None:
        if self._watermark is not None and watermark <= self._watermark:
            return
        self._watermark = watermark
        bound = watermark - self.allowed_lateness_ms
        finalizing = self._finalizing
        while finalizing and finalizing[0][0] <= watermark:
            when, experiment, unit = heapq.heappop(finalizing)
            anchor = self._open.get(unit, {}).get(experiment)
            if anchor is None or anchor.ts + self.close_after_ms + self.allowed_lateness_ms != when:
                continue  # re-anchored earlier: a fresher entry finalizes it
            self._final[(experiment, unit)] = (anchor, self._row(anchor, self._events.get(unit, {}).values()))
            del self._open[unit][experiment]
            if not self._open[unit]:
                del self._open[unit]
        for unit in list(self._events):  # a sweep of the held events, once per move of the watermark
            anchors = self._open.get(unit)
            keep_from = bound if not anchors else min(bound, min(a.ts for a in anchors.values()))
            events = self._events[unit]
            gone = [event_id for event_id, event in events.items() if event.ts < keep_from]
            for event_id in gone:
                del events[event_id]
            if not events:
                del self._events[unit]


class RefitSchedule:
    """Refit the surrogate every ``every_ms`` of event time from the join's closed rows."""

    def __init__(self, join: Rows, *, every_ms: int = DAY_MS, signals: Sequence[str] = SIGNALS,
                 l2: float = 1.0, min_rows: int = 50) -> None:
        if every_ms <= 0:
            raise ValueError(f"every_ms: {every_ms!r} must be > 0")
        self.join, self.every_ms, self.signals, self.l2, self.min_rows = join, every_ms, tuple(signals), l2, min_rows
        self.last_fit: int | None = None
        self.model: Surrogate | None = None

    def maybe_refit(self, watermark: int) -> Surrogate | None:
        """The new surrogate when one is due at ``watermark`` and enough rows have closed; else None."""
        if self.last_fit is not None and watermark < self.last_fit + self.every_ms:
            return None
        rows = self.join.rows(watermark=watermark)
        if len(rows) < self.min_rows:
            return None
        self.last_fit = watermark
        self.model = fit_surrogate(rows, signals=self.signals, l2=self.l2, fitted_at=watermark)
        return self.model
