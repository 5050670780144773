"""The surrogate's follower: its watermark is the slowest events partition's, and it refits once a
day of event time has passed since the last fit, from the outcomes closed by then."""

from __future__ import annotations

from infra.cli.surrogate import SurrogateFollower
from streams.events import EventType, Exposure, ListeningEvent

DAY = 86_400_000
T0 = 1_767_225_600_000


def exposure(user: str, ts: int) -> Exposure:
    return Exposure(exposure_id=f"{user}-x", experiment="exp", variant=("control", "treatment")[int(user[1:]) % 2],
                    user_id=user, ts=ts)


def event(event_id: str, user: str, ts: int) -> ListeningEvent:
    return ListeningEvent(event_id=event_id, user_id=user, ts=ts, type=EventType.SESSION_START)


def test_rows_close_with_the_slowest_events_partition_and_refits_follow_event_time():
    follower = SurrogateFollower(every_ms=DAY, min_rows=4)
    for u in range(8):
        follower.add_exposure(exposure(f"u{u}", T0))
        follower.add_event(0, event(f"u{u}-back", f"u{u}", T0 + 7 * DAY + u))  # day-7 returns, partition 0
    assert follower.maybe_refit() is None  # no events partition has passed any outcome interval
    follower.add_event(0, event("late-0", "other", T0 + 9 * DAY))
    follower.add_event(1, event("slow-1", "other", T0 + 2 * DAY))
    assert follower.watermark == T0 + 2 * DAY  # partition 1 holds it back
    assert follower.maybe_refit() is None
    follower.add_event(1, event("late-1", "other", T0 + 9 * DAY))
    first = follower.maybe_refit()
    assert first is not None and first.n == 8 and first.fitted_at == T0 + 9 * DAY
    follower.add_exposure(exposure("u8", T0 + DAY))  # a new unit, its outcome interval closed too
    follower.add_event(0, event("u8-back", "u8", T0 + 8 * DAY))
    assert follower.maybe_refit() is None  # not a day of event time since the last fit
    follower.add_event(0, event("next-0", "other", T0 + 10 * DAY))
    follower.add_event(1, event("next-1", "other", T0 + 10 * DAY))
    second = follower.maybe_refit()
    assert second is not None and second.n == 9 and second.fitted_at == T0 + 10 * DAY


def test_a_replayed_record_changes_no_refit():
    def follow(replay: bool) -> SurrogateFollower:
        follower = SurrogateFollower(every_ms=DAY, min_rows=1)
        for _ in range(2 if replay else 1):
            for u in range(6):
                follower.add_exposure(exposure(f"u{u}", T0 + u))
                if u % 3:
                    follower.add_event(u % 2, event(f"u{u}-back", f"u{u}", T0 + 7 * DAY + u))
            follower.add_event(0, event("end-0", "other", T0 + 9 * DAY))
            follower.add_event(1, event("end-1", "other", T0 + 9 * DAY))
        return follower

    once, twice = follow(False).maybe_refit(), follow(True).maybe_refit()
    assert once is not None and twice is not None
    assert once.to_state() == twice.to_state()
