"""The reward join agrees with a brute-force oracle on the sorted, deduplicated log."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import Decision, ListeningEvent
from streams.learning import (
    Admission,
    InvalidJoinerState,
    RewardJoiner,
    matches_genre,
    one_per_play,
)

T0 = 1_767_225_600_000
WINDOW = 10_000


def decision(i: int, user: str, ts: int, arm: str) -> Decision:
    return Decision(
        decision_id=f"d{i}", user_id=user, ts=ts, policy="p", policy_version=0,
        arm=arm, propensity=0.5, arms=sorted({arm, "a", "b"}),
    )


def event(i: int, user: str, ts: int, genre: str, kind: str = "play", ms: int = 1000) -> ListeningEvent:
    return ListeningEvent(
        event_id=f"e{i}", user_id=user, ts=ts, type=kind, item_id=f"i{i % 3}", genre=genre, ms_played=ms
    )


def oracle(records, *, window=WINDOW, reward_fn=None, match=None):
    """Per decision id: (reward, credited events), straight from the definition."""
    from streams.learning import matches_item_or_genre, ms_played

    reward_fn = reward_fn or ms_played
    match = match or matches_item_or_genre
    decisions = [r for r in records if isinstance(r, Decision)]
    result = {d.decision_id: [0.0, 0] for d in decisions}
    for e in (r for r in records if isinstance(r, ListeningEvent)):
        value = reward_fn(e)
        if value is None:
            continue
        eligible = [
            d for d in decisions
            if d.user_id == e.user_id and d.ts <= e.ts < d.ts + window and match(d, e)
        ]
        if eligible:
            winner = max(eligible, key=lambda d: (d.ts, d.decision_id))
            result[winner.decision_id][0] += value
            result[winner.decision_id][1] += 1
    return {k: (v[0], v[1]) for k, v in result.items()}


def as_result(rewards):
    ids = [r.decision.decision_id for r in rewards]
    assert len(ids) == len(set(ids)), "a decision was emitted twice"
    return {r.decision.decision_id: (r.reward, r.events) for r in rewards}


@st.composite
def logs(draw):
    n_dec = draw(st.integers(1, 6))
    n_ev = draw(st.integers(0, 10))
    users = st.sampled_from(["u1", "u2"])
    offset = st.integers(0, 30).map(lambda k: T0 + k * 1000)
    records = [decision(i, draw(users), draw(offset), draw(st.sampled_from(["a", "b"]))) for i in range(n_dec)]
    records += [
        event(i, draw(users), draw(offset), draw(st.sampled_from(["a", "b", "c"])),
              draw(st.sampled_from(["play", "play", "skip"])), draw(st.integers(0, 5000)))
        for i in range(n_ev)
    ]
    arrival = draw(st.permutations(records))
    dups = draw(st.lists(st.sampled_from(records), max_size=4))
    for dup in dups:  # re-deliver copies at random places
        arrival.insert(draw(st.integers(0, len(arrival))), dup)
    advances = draw(st.lists(st.booleans(), min_size=len(arrival), max_size=len(arrival)))
    return records, arrival, advances


@settings(deadline=None, max_examples=200)
@given(logs(), st.sampled_from([0, 3000, 10_000]))
def test_any_arrival_order_matches_the_oracle_on_the_accepted_records(log, lateness):
    _, arrival, advances = log
    joiner = RewardJoiner(window_ms=WINDOW, allowed_lateness_ms=lateness)
    accepted, rewards = [], []
    for record, advance in zip(arrival, advances, strict=True):
        add = joiner.add_decision if isinstance(record, Decision) else joiner.add_event
        if add(record) is Admission.ACCEPTED:
            accepted.append(record)
        if advance:
            rewards += joiner.advance()
    rewards += joiner.advance(T0 + 10**6)
    assert as_result(rewards) == oracle(accepted)
    assert joiner.open_decisions == 0 and joiner.buffered_events == 0


@settings(deadline=None, max_examples=200)
@given(logs())
def test_with_enough_lateness_shuffles_and_duplicates_change_nothing(log):
    records, arrival, advances = log
    span = 31_000  # every timestamp lies within T0 + [0, 30 s]: nothing can be late
    joiner = RewardJoiner(window_ms=WINDOW, allowed_lateness_ms=span)
    rewards = []
    for record, advance in zip(arrival, advances, strict=True):
        (joiner.add_decision if isinstance(record, Decision) else joiner.add_event)(record)
        if advance:
            rewards += joiner.advance()
    rewards += joiner.advance(T0 + 10**6)
    assert as_result(rewards) == oracle(records)
    assert joiner.counts["decisions_late"] == joiner.counts["events_late"] == 0

    in_order = RewardJoiner(window_ms=WINDOW)
    sorted_rewards = []
    for record in sorted(records, key=lambda r: r.ts):
        (in_order.add_decision if isinstance(record, Decision) else in_order.add_event)(record)
        sorted_rewards += in_order.advance()
    sorted_rewards += in_order.advance(T0 + 10**6)
    assert as_result(sorted_rewards) == as_result(rewards)


@settings(deadline=None, max_examples=100)
@given(logs())
def test_state_round_trip_through_json_at_every_step_changes_nothing(log):
    _, arrival, advances = log
    plain = RewardJoiner(window_ms=WINDOW, allowed_lateness_ms=2000)
    reloaded = RewardJoiner(window_ms=WINDOW, allowed_lateness_ms=2000)
    out_plain, out_reloaded = [], []
    for record, advance in zip(arrival, advances, strict=True):
        for joiner in (plain, reloaded):
            (joiner.add_decision if isinstance(record, Decision) else joiner.add_event)(record)
        if advance:
            out_plain += plain.advance()
            out_reloaded += reloaded.advance()
        reloaded = RewardJoiner.from_state(json.loads(json.dumps(reloaded.to_state())))
    out_plain += plain.advance(T0 + 10**6)
    out_reloaded += reloaded.advance(T0 + 10**6)
    assert as_result(out_plain) == as_result(out_reloaded)
    assert plain.counts == reloaded.counts


def test_most_recent_decision_gets_the_play_and_an_empty_window_gets_the_default():
    joiner = RewardJoiner(window_ms=WINDOW, default_reward=-1.0)
    joiner.add_decision(decision(1, "u1", T0, "a"))
    joiner.add_decision(decision(2, "u1", T0 + 2000, "a"))
    joiner.add_decision(decision(3, "u1", T0 + 3000, "b"))  # other arm: not eligible
    joiner.add_event(event(1, "u1", T0 + 1000, "a", ms=100))  # only d1 has started
    joiner.add_event(event(2, "u1", T0 + 5000, "a", ms=200))  # d1 and d2 eligible: d2
    joiner.add_event(event(3, "u2", T0 + 5000, "a", ms=400))  # another user
    result = as_result(joiner.advance(T0 + 20_000))
    assert result == {"d1": (100.0, 1), "d2": (200.0, 1), "d3": (-1.0, 0)}


def test_late_events_are_counted_not_merged():
    joiner = RewardJoiner(window_ms=WINDOW)
    joiner.add_decision(decision(1, "u1", T0, "a"))
    assert joiner.advance(T0 + WINDOW) != []
    assert joiner.add_event(event(1, "u1", T0 + 1000, "a")) is Admission.LATE
    assert joiner.add_decision(decision(1, "u1", T0, "a")) is Admission.LATE
    assert joiner.counts["events_late"] == 1 and joiner.counts["decisions_late"] == 1
    assert joiner.advance(T0 + 10 * WINDOW) == []


def test_reward_and_match_functions_are_parameters():
    joiner = RewardJoiner(window_ms=WINDOW, reward_fn=one_per_play, match=matches_genre)
    joiner.add_decision(decision(1, "u1", T0, "a"))
    joiner.add_event(event(1, "u1", T0 + 1, "a", ms=5000))
    joiner.add_event(event(2, "u1", T0 + 2, "a", ms=7000))
    joiner.add_event(event(3, "u1", T0 + 3, "a", kind="skip"))
    assert joiner.add_event(event(2, "u1", T0 + 2, "a", ms=7000)) is Admission.DUPLICATE
    assert as_result(joiner.advance(T0 + WINDOW)) == {"d1": (2.0, 2)}


def test_state_stays_bounded_on_a_long_stream():
    joiner = RewardJoiner(window_ms=WINDOW, allowed_lateness_ms=1000)
    emitted = 0
    for k in range(2000):
        ts = T0 + k * 500
        joiner.add_decision(decision(k, f"u{k % 7}", ts, "a"))
        joiner.add_event(event(k, f"u{(k + 3) % 7}", ts, "a"))
        emitted += len(joiner.advance())
        assert joiner.open_decisions <= 2 * WINDOW // 500 + 4
        assert joiner.buffered_events <= 2 * WINDOW // 500 + 4
    assert emitted + joiner.open_decisions == 2000
    assert len(json.dumps(joiner.to_state())) < 50_000


def test_a_malformed_state_is_rejected_with_a_reason():
    with pytest.raises(InvalidJoinerState, match="format"):
        RewardJoiner.from_state({"format": 99})
    state = RewardJoiner().to_state()
    state["decisions"] = [{"decision_id": "d1"}]
    with pytest.raises(InvalidJoinerState, match="malformed"):
        RewardJoiner.from_state(state)


def test_everything_exported_is_importable():
    import streams.learning as package

    assert all(getattr(package, name, None) is not None for name in package.__all__)
