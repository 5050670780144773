"""Join decisions with the reward events that follow them, by event time.

The reward of a decision ``d`` is the sum of ``reward_fn(e)`` over the events ``e``
credited to it, or ``default_reward`` when there is none. An event is *eligible* for
``d`` when it is a reward event (``reward_fn(e) is not None``) of the same user,
``match(d, e)`` holds and ``d.ts <= e.ts < d.ts + window_ms``. An event eligible for
several decisions is credited to **the most recent one** (largest ``ts``, then largest
``decision_id``): the recommendation the listener saw last gets the play.

Windows close on the watermark, which only moves forward and only in ``advance``:
either to the watermark the caller supplies (a consumer over several partitions or
topics should pass the minimum over them of the newest event time seen) or, by
default, to the newest event time seen minus ``allowed_lateness_ms``. A decision is
emitted, once, when ``watermark >= d.ts + window_ms``.

A record whose ``ts`` is below the watermark when it arrives is *late*: it is counted
and dropped, never merged, because the windows it could change may be closed. A
record whose id was already accepted is a *duplicate* and changes nothing (a
duplicate of a record already evicted is below the watermark, hence late). So for the
records accepted, the result equals the one computed on the sorted, deduplicated log,
whatever the arrival order. State is bounded: closed decisions are evicted, and so are
events below the watermark that no open decision of their user can still claim.

>>> from streams.events import Decision, ListeningEvent
>>> T = 1767225600000
>>> joiner = RewardJoiner(window_ms=60_000)
>>> joiner.add_decision(Decision(decision_id="d1", user_id="u1", ts=T, policy="softmax",
...     policy_version=1, arm="jazz", propensity=0.5, arms=["jazz", "rock"]))
<Admission.ACCEPTED: 'accepted'>
>>> joiner.add_event(ListeningEvent(event_id="e1", user_id="u1", ts=T + 5_000, type="play",
...     item_id="i1", genre="jazz", ms_played=30_000))
<Admission.ACCEPTED: 'accepted'>
>>> joiner.advance(T + 59_999)
[]
>>> [(r.decision.decision_id, r.reward, r.events) for r in joiner.advance(T + 60_000)]
[('d1', 30000.0, 1)]
"""

from __future__ import annotations

import bisect
import heapq
import logging
import operator
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streams.events import Decision, ListeningEvent
from streams.learning.errors import InvalidJoinerState
from streams.learning.rewards import MatchFn, RewardFn, matches_item_or_genre, ms_played

logger = logging.getLogger(__name__)

#: Version of the layout written by ``RewardJoiner.to_state``.
STATE_FORMAT = 1

#: The watermark before anything has been seen: nothing is late, nothing closes.
NO_WATERMARK = -(2**63)

DEFAULT_WINDOW_MS = 30 * 60 * 1000


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    IGNORED = "ignored"  # an event that carries no reward


@dataclass(frozen=True, slots=True)
class Reward:
    """A closed decision with its reward, the number of events credited, and the
    watermark that closed it."""

    decision: Decision
    reward: float
    events: int
    closed_at: int


#: The counter of each admission of each kind of record ("decisions_accepted", ...).
_COUNT_KEYS = {(kind, admission): f"{kind}s_{admission.value}"
               for kind in ("decision", "event") for admission in Admission}

#: An open decision as the joiner keeps it: its time and id first, so that tuples sort in rank order
#: (the most recent decision wins) and the hot loops read no model attribute (slow on pydantic models).
_OpenDecision = tuple[int, str, Decision]
#: A buffered event with its time first (same reason) and its reward.
_BufferedEvent = tuple[int, ListeningEvent, float]

_START = operator.itemgetter(0)
#: Closing order of the closed tuples: decision time and id (one window length: close time follows decision time)
_CLOSING_ORDER = operator.itemgetter(0, 1)


class RewardJoiner:
    """Event-time join of decisions and reward events (see the module docstring)."""

    def __init__(
        self,
        *,
        window_ms: int = DEFAULT_WINDOW_MS,
        allowed_lateness_ms: int = 0,
        reward_fn: RewardFn = ms_played,
        match: MatchFn = matches_item_or_genre,
        default_reward: float = 0.0,
    ) -> None:
        if window_ms <= 0 or allowed_lateness_ms < 0:
            raise ValueError("window_ms must be > 0 and allowed_lateness_ms >= 0")
        self.window_ms = int(window_ms)
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self.reward_fn = reward_fn
        self.match = match
        self.default_reward = float(default_reward)
        self.watermark = NO_WATERMARK
        self.max_ts = NO_WATERMARK
        self.counts: Counter[str] = Counter()
        self._decisions: dict[str, dict[str, _OpenDecision]] = {}  # user -> id -> open decision
        self._events: dict[str, dict[str, _BufferedEvent]] = {}  # user -> id -> buffered event
        self._decision_ids: set[str] = set()
        # (close time, user) per open decision and (ts, user) per buffered event, so that
        # advance() visits only the users whose state can change
        self._closing: list[tuple[int, str]] = []
        self._expiring: list[tuple[int, str]] = []

    @property
    def open_decisions(self) -> int:
        return len(self._decision_ids)

    @property
    def buffered_events(self) -> int:
        return sum(len(events) for events in self._events.values())

    def add_decision(self, decision: Decision) -> Admission:
        ts, decision_id = decision.ts, decision.decision_id
        if ts > self.max_ts:
            self.max_ts = ts
        if decision_id in self._decision_ids:
            return self._count(Admission.DUPLICATE, "decision")
        if ts < self.watermark:
            return self._count(Admission.LATE, "decision")
        user = decision.user_id
        open_ = self._decisions.get(user)
        if open_ is None:
            open_ = self._decisions[user] = {}
        open_[decision_id] = (ts, decision_id, decision)
        self._decision_ids.add(decision_id)
        heapq.heappush(self._closing, (ts + self.window_ms, user))
        self.counts["decisions_accepted"] += 1
        return Admission.ACCEPTED

    def add_event(self, event: ListeningEvent) -> Admission:
        ts = event.ts
        if ts > self.max_ts:
            self.max_ts = ts
        value = self.reward_fn(event)
        if value is None:
            return self._count(Admission.IGNORED, "event")
        user = event.user_id
        buffered = self._events.get(user)
        if buffered is None:
            if ts < self.watermark:
                return self._count(Admission.LATE, "event")
            buffered = self._events[user] = {}
        elif event.event_id in buffered:
            return self._count(Admission.DUPLICATE, "event")
        elif ts < self.watermark:
            return self._count(Admission.LATE, "event")
        buffered[event.event_id] = (ts, event, float(value))
        heapq.heappush(self._expiring, (ts, user))
        self.counts["events_accepted"] += 1
        return Admission.ACCEPTED

    def _count(self, admission: Admission, kind: str) -> Admission:
        self.counts[_COUNT_KEYS[kind, admission]] += 1
        if admission is Admission.LATE:
            logger.debug("late %s dropped below watermark %d", kind, self.watermark)
        return admission

    def advance(self, watermark: int | None = None) -> list[Reward]:
        """Move the watermark forward and return the decisions whose window closed."""
        closed = self.close_windows(watermark)
        at = self.watermark
        return [Reward(decision, reward, events, at) for decision, reward, events in closed]

    def close_windows(self, watermark: int | None = None) -> list[tuple[Decision, float, int]]:
        """``advance`` without the ``Reward`` around each result: ``(decision, reward, events)``
        in closing order, each closed at ``self.watermark`` (the learner's hot path)."""
        target = self.max_ts - self.allowed_lateness_ms if watermark is None else int(watermark)
        if self.max_ts == NO_WATERMARK and watermark is None:
            return []
        if target > self.watermark:
            self.watermark = target
        now = self.watermark
        heap, closing = self._closing, set()
        while heap and heap[0][0] <= now:
            closing.add(heapq.heappop(heap)[1])
        heap = self._expiring
        expiring: dict[str, int] = {}  # user -> the oldest of its events the watermark just passed
        while heap and heap[0][0] < now:
            ts, user = heapq.heappop(heap)
            expiring.setdefault(user, ts)
        # Users are independent: each closes its decisions, then drops the events nothing can claim.
        closed: list[tuple[int, str, Decision, float, int]] = []
        for user in closing:
            self._close_user(user, closed)
        events = self._events
        for user, oldest in expiring.items():
            if user in events and user not in closing:
                self._evict_events(user, oldest)
        if closed:
            self.counts["decisions_closed"] += len(closed)
        closed.sort(key=_CLOSING_ORDER)
        return [(decision, reward, n) for _, _, decision, reward, n in closed]

    def _close_user(self, user: str, closed: list[tuple[int, str, Decision, float, int]]) -> None:
        """Append the user's decisions whose window the watermark has passed, with their rewards;
        then evict the user's events that no open decision can claim."""
        decisions = self._decisions.get(user)
        if not decisions:
            if user in self._events:
                self._drop_events(user, self._events[user], self.watermark)
            return
        last_start = self.watermark - self.window_ms  # a decision closes when ts + window <= watermark
        default, open_ids = self.default_reward, self._decision_ids
        events = self._events.get(user)
        if not events:  # nothing to credit: every closing decision gets the default
            closing = [entry for entry in decisions.values() if entry[0] <= last_start]
            for ts, decision_id, decision in closing:
                del decisions[decision_id]
                open_ids.discard(decision_id)
                closed.append((ts, decision_id, decision, default, 0))
        else:
            # Every open decision can win an event; the closing ones are the first ``k`` by rank.
            ranked = list(decisions.values())
            starts = list(map(_START, ranked))
            if not all(map(operator.lt, starts, starts[1:])):  # not already in rank order (as they came)
                ranked.sort()  # by time, then id: ids are unique, the decisions themselves are never compared
                starts = list(map(_START, ranked))
            k = bisect.bisect_right(starts, last_start)
            totals, credited = [0.0] * k, [0] * k
            window, match = self.window_ms, self.match
            low, high = (starts[0], starts[k - 1] + window) if k else (0, 0)
            # once these close, the oldest decision still open (ranked[k]) holds back the events it may claim
            now = self.watermark
            horizon = starts[k] if k < len(starts) and starts[k] < now else now
            stale = []
            for event_id, (ts, event, value) in events.items():
                if ts < horizon:
                    stale.append(event_id)
                if low <= ts < high:
                    # the most recent eligible decision: scan back from the last one started by ts
                    i = bisect.bisect_right(starts, ts)
                    while i > 0:
                        i -= 1
                        start, _, decision = ranked[i]
                        if start + window <= ts:
                            break  # this one and all before it ended before the event
                        if match(decision, event):
                            if i < k:
                                totals[i] += value
                                credited[i] += 1
                            break
            for i in range(k):
                ts, decision_id, decision = ranked[i]
                del decisions[decision_id]
                open_ids.discard(decision_id)
                n = credited[i]
                closed.append((ts, decision_id, decision, totals[i] if n else default, n))
            for event_id in stale:
                del events[event_id]
            if not events:
                del self._events[user]
        if not decisions:
            del self._decisions[user]

    def _evict_events(self, user: str, passed: int) -> None:
        """Evict the events of a user none of whose decisions closed, ``passed`` the oldest of those
        the watermark just passed. The user's other events are as the last eviction left them: at or
        past the horizon then, its oldest open decision (which is still open), so only those the
        watermark just passed may go, and none does if the oldest of them is past the horizon."""
        open_ = self._decisions.get(user)
        horizon = self.watermark
        if open_:
            oldest = min(map(_START, open_.values()))
            if oldest < horizon:
                horizon = oldest
        if passed < horizon:
            self._drop_events(user, self._events[user], horizon)

    def _drop_events(self, user: str, events: dict[str, _BufferedEvent], horizon: int) -> None:
        """Drop the user's buffered events older than ``horizon``."""
        for event_id in [i for i, (ts, _, _) in events.items() if ts < horizon]:
            del events[event_id]
        if not events:
            del self._events[user]

    # -- JSON state (the reward and match functions are code: pass them again) ----

    def to_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "window_ms": self.window_ms,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "default_reward": self.default_reward,
            "watermark": self.watermark,
            "max_ts": self.max_ts,
            "counts": dict(self.counts),
            "decisions": [d.model_dump(mode="json") for ds in self._decisions.values() for _, _, d in ds.values()],
            "events": [
                [e.model_dump(mode="json"), v] for es in self._events.values() for _, e, v in es.values()
            ],
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], *, reward_fn: RewardFn = ms_played, match: MatchFn = matches_item_or_genre
    ) -> RewardJoiner:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise InvalidJoinerState(f"format: expected a joiner state of format {STATE_FORMAT}")
        try:
            joiner = cls(
                window_ms=state["window_ms"],
                allowed_lateness_ms=state["allowed_lateness_ms"],
                reward_fn=reward_fn,
                match=match,
                default_reward=state["default_reward"],
            )
            joiner.watermark = int(state["watermark"])
            joiner.max_ts = int(state["max_ts"])
            joiner.counts.update({str(k): int(v) for k, v in state["counts"].items()})
            for raw in state["decisions"]:
                d = Decision.model_validate(raw)
                joiner._decisions.setdefault(d.user_id, {})[d.decision_id] = (d.ts, d.decision_id, d)
                joiner._decision_ids.add(d.decision_id)
                joiner._closing.append((d.ts + joiner.window_ms, d.user_id))
            for raw, value in state["events"]:
                e = ListeningEvent.model_validate(raw)
                joiner._events.setdefault(e.user_id, {})[e.event_id] = (e.ts, e, float(value))
                joiner._expiring.append((e.ts, e.user_id))
            heapq.heapify(joiner._closing)
            heapq.heapify(joiner._expiring)
        except InvalidJoinerState:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidJoinerState(f"malformed joiner state ({type(exc).__name__}: {exc})") from exc
        return joiner
