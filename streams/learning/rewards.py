"""What counts as a reward, and which events a decision's arm earns.

A reward function maps a listening event to the reward it carries, or ``None`` when
the event is no reward at all (the joiner then ignores it). A match function says
whether an event is on the arm a decision recommended. Arms are item ids or genres.

>>> from streams.events import Decision, ListeningEvent
>>> event = ListeningEvent(event_id="e1", user_id="u1", ts=1767225600000, type="play",
...                        item_id="i9", genre="jazz", ms_played=30000)
>>> ms_played(event), one_per_play(event)
(30000.0, 1.0)
>>> decision = Decision(decision_id="d1", user_id="u1", ts=1767225600000, policy="softmax",
...                     policy_version=3, arm="jazz", propensity=0.5, arms=["jazz", "rock"])
>>> matches_item_or_genre(decision, event), matches_item(decision, event)
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable

from streams.events import Decision, EventType, ListeningEvent

RewardFn = Callable[[ListeningEvent], float | None]
MatchFn = Callable[[Decision, ListeningEvent], bool]


def ms_played(event: ListeningEvent) -> float | None:
    """Milliseconds played, for play events (the default reward)."""
    return float(event.ms_played) if event.type is EventType.PLAY else None


def one_per_play(event: ListeningEvent) -> float | None:
    """1 for every play event."""
    return 1.0 if event.type is EventType.PLAY else None


def matches_item_or_genre(decision: Decision, event: ListeningEvent) -> bool:
    """The event's item or genre is the recommended arm (the default)."""
    return event.item_id == decision.arm or event.genre == decision.arm


def matches_item(decision: Decision, event: ListeningEvent) -> bool:
    return event.item_id == decision.arm


def matches_genre(decision: Decision, event: ListeningEvent) -> bool:
    return event.genre == decision.arm
