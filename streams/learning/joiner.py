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

_rank = operator.attrgetter("ts", "decision_id")  # (ts, decision_id): the most recent decision wins
_TS = operator.attrgetter("ts")


def _closing_order(reward: Reward) -> tuple[int, str]:
    """Close time, then decision time and id; with one window length, close time follows decision time."""
    decision = reward.decision
    return decision.ts, decision.decision_id


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
        self._decisions: dict[str, dict[str, Decision]] = {}  # user -> id -> open decision
        self._events: dict[str, dict[str, tuple[ListeningEvent, float]]] = {}  # user -> id -> (event, reward)
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
        self.max_ts = max(self.max_ts, decision.ts)
        if decision.decision_id in self._decision_ids:
            return self._count(Admission.DUPLICATE, "decision")
        if decision.ts < self.watermark:
            return self._count(Admission.LATE, "decision")
        self._decisions.setdefault(decision.user_id, {})[decision.decision_id] = decision
        self._decision_ids.add(decision.decision_id)
        heapq.heappush(self._closing, (decision.ts + self.window_ms, decision.user_id))
        return self._count(Admission.ACCEPTED, "decision")

    def add_event(self, event: ListeningEvent) -> Admission:
        self.max_ts = max(self.max_ts, event.ts)
        value = self.reward_fn(event)
        if value is None:
            return self._count(Admission.IGNORED, "event")
        buffered = self._events.setdefault(event.user_id, {})
        if event.event_id in buffered:
            return self._count(Admission.DUPLICATE, "event")
        if event.ts < self.watermark:
            if not buffered:
                del self._events[event.user_id]
            return self._count(Admission.LATE, "event")
        buffered[event.event_id] = (event, float(value))
        heapq.heappush(self._expiring, (event.ts, event.user_id))
        return self._count(Admission.ACCEPTED, "event")

    def _count(self, admission: Admission, kind: str) -> Admission:
        self.counts[_COUNT_KEYS[kind, admission]] += 1
        if admission is Admission.LATE:
            logger.debug("late %s dropped below watermark %d", kind, self.watermark)
        return admission

    def advance(self, watermark: int | None = None) -> list[Reward]:
        """Move the watermark forward and return the decisions whose window closed."""
        target = self.max_ts - self.allowed_lateness_ms if watermark is None else int(watermark)
        if self.max_ts == NO_WATERMARK and watermark is None:
            return []
        self.watermark = max(self.watermark, target)
        closing: set[str] = set()
        while self._closing and self._closing[0][0] <= self.watermark:
            closing.add(heapq.heappop(self._closing)[1])
        expiring = set(closing)
        while self._expiring and self._expiring[0][0] < self.watermark:
            expiring.add(heapq.heappop(self._expiring)[1])
        closed: list[Reward] = []
        for user in sorted(closing):
            closed.extend(self._close_user(user))
        for user in sorted(expiring):
            if user in self._events:
                self._evict_events(user)
        closed.sort(key=_closing_order)
        return closed

    def _close_user(self, user: str) -> list[Reward]:
        decisions = self._decisions.get(user, {})
        last_start = self.watermark - self.window_ms  # a decision closes when ts + window <= watermark
        closing = [i for i, d in decisions.items() if d.ts <= last_start]
        if not closing:
            return []
        totals = dict.fromkeys(closing, 0.0)
        credited = dict.fromkeys(closing, 0)
        events = self._events.get(user)
        if events:
            ranked = sorted(decisions.values(), key=_rank)  # every open decision can win an event
            starts = list(map(_TS, ranked))
            closing_ts = [decisions[i].ts for i in closing]
            low, high = min(closing_ts), max(closing_ts) + self.window_ms
            for event, value in events.values():
                if low <= event.ts < high:
                    winner = self._winner(ranked, starts, event)
                    if winner is not None:
                        winner_id = winner.decision_id
                        if winner_id in totals:
                            totals[winner_id] += value
                            credited[winner_id] += 1
        rewards = []
        default, watermark, open_ids = self.default_reward, self.watermark, self._decision_ids
        for decision_id in closing:
            decision = decisions.pop(decision_id)
            open_ids.discard(decision_id)
            n = credited[decision_id]
            rewards.append(Reward(decision, totals[decision_id] if n else default, n, watermark))
        if not decisions:
            self._decisions.pop(user, None)
        self.counts["decisions_closed"] += len(rewards)
        return rewards

    def _winner(self, ranked: list[Decision], starts: list[int], event: ListeningEvent) -> Decision | None:
        """The most recent eligible decision: scan back from the last one started by ``event.ts``."""
        i = bisect.bisect_right(starts, event.ts)
        while i > 0:
            i -= 1
            decision = ranked[i]
            if decision.ts + self.window_ms <= event.ts:
                return None  # this one and all before it ended before the event
            if self.match(decision, event):
                return decision
        return None

    def _evict_events(self, user: str) -> None:
        open_ = self._decisions.get(user)
        horizon = self.watermark
        if open_:
            horizon = min(horizon, min(map(_TS, open_.values())))
        events = self._events[user]
        for event_id in [i for i, (e, _) in events.items() if e.ts < horizon]:
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
            "decisions": [d.model_dump(mode="json") for ds in self._decisions.values() for d in ds.values()],
            "events": [
                [e.model_dump(mode="json"), v] for es in self._events.values() for e, v in es.values()
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
                joiner._decisions.setdefault(d.user_id, {})[d.decision_id] = d
                joiner._decision_ids.add(d.decision_id)
                joiner._closing.append((d.ts + joiner.window_ms, d.user_id))
            for raw, value in state["events"]:
                e = ListeningEvent.model_validate(raw)
                joiner._events.setdefault(e.user_id, {})[e.event_id] = (e, float(value))
                joiner._expiring.append((e.ts, e.user_id))
            heapq.heapify(joiner._closing)
            heapq.heapify(joiner._expiring)
        except InvalidJoinerState:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidJoinerState(f"malformed joiner state ({type(exc).__name__}: {exc})") from exc
        return joiner
