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

from collections.abc import Sequence
from dataclasses import dataclass

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


class OutcomeJoin:
    """Exposures and events by id; rows for the units whose outcome interval has closed (module doc)."""

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
        end = self.outcome_delay_ms + self.outcome_length_ms
        return sum(1 for a in self._anchors().values() if a.ts + end > watermark)

    def rows(self, *, watermark: int) -> list[SurrogateRow]:
        """A row per (experiment, unit) whose outcome interval ended by ``watermark``, sorted."""
        end = self.outcome_delay_ms + self.outcome_length_ms
        out = []
        for (experiment, unit), anchor in sorted(self._anchors().items()):
            if anchor.ts + end > watermark:
                continue
            within = [e for e in self._events.get(unit, {}).values()
                      if anchor.ts <= e.ts < anchor.ts + self.attribution_window_ms]
            signals = short_term_signals(within, anchor.ts, horizon_ms=self.signal_horizon_ms)
            outcome = retention(within, anchor.ts, delay_ms=self.outcome_delay_ms, length_ms=self.outcome_length_ms)
            out.append(SurrogateRow(experiment, anchor.variant, unit, signals, outcome))
        return out


class RefitSchedule:
    """Refit the surrogate every ``every_ms`` of event time from the join's closed rows."""

    def __init__(self, join: OutcomeJoin, *, every_ms: int = DAY_MS, signals: Sequence[str] = SIGNALS,
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
