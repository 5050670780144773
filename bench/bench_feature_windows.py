"""Micro-benchmark of the feature state; prints JSON. Not a test: it asserts nothing.

    python -m bench.bench_feature_windows [--events 100000] [--users 1000]

Reports µs per event for ``apply`` alone, for ``from_dict`` + ``apply`` + ``to_dict``
(what a table adapter does per event) and for a JSON round trip of the state, and µs per
``features()`` call, as a function of how many events a user keeps (a week's worth).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from streams.events import EventType, ListeningEvent
from streams.features.config import DEFAULT_CONFIG
from streams.features.state import UserFeatureState

BASE = 1_767_225_600_000
TYPES = [EventType.PLAY] * 6 + [EventType.SKIP] * 3 + [EventType.SESSION_START]


def make_events(n: int, users: int, span_ms: int, seed: int = 7) -> list[ListeningEvent]:
    rng = random.Random(seed)
    genres = [*DEFAULT_CONFIG.top_genres, "polka", None]
    out = []
    for i in range(n):
        ts = BASE + span_ms * i // n - rng.randrange(0, 60_000)  # up to 1 min out of order
        kind = rng.choice(TYPES)
        out.append(ListeningEvent(
            event_id=f"{i:032x}", user_id=f"user-{rng.randrange(users)}", ts=ts, type=kind,
            item_id=f"item-{rng.randrange(5000)}" if kind is not EventType.SESSION_START else None,
            genre=rng.choice(genres), ms_played=rng.randrange(0, 240_000),
        ))
    return out


def per_event_us(fn, events) -> float:
    start = time.perf_counter()
    fn(events)
    return (time.perf_counter() - start) / len(events) * 1e6


def run(n_events: int, users: int, span_ms: int) -> dict:
    events = make_events(n_events, users, span_ms)

    def apply_only(evs):
        states: dict[str, UserFeatureState] = {}
        for ev in evs:
            state = states.get(ev.user_id)
            if state is None:
                state = states[ev.user_id] = UserFeatureState(ev.user_id)
            state.apply(ev)

    table: dict[str, dict] = {}

    def table_adapter(evs):
        for ev in evs:
            raw = table.get(ev.user_id)
            state = UserFeatureState(ev.user_id) if raw is None else UserFeatureState.from_dict(raw)
            state.apply(ev)
            table[ev.user_id] = state.to_dict()

    json_table: dict[str, str] = {}

    def json_adapter(evs):
        for ev in evs:
            raw = json_table.get(ev.user_id)
            state = (UserFeatureState(ev.user_id) if raw is None
                     else UserFeatureState.from_dict(json.loads(raw)))
            state.apply(ev)
            json_table[ev.user_id] = json.dumps(state.to_dict())

    result = {
        "events": n_events, "users": users, "span_hours": span_ms / 3_600_000,
        "apply_us_per_event": per_event_us(apply_only, events),
        "from_dict_apply_to_dict_us_per_event": per_event_us(table_adapter, events),
        "json_loads_apply_json_dumps_us_per_event": per_event_us(json_adapter, events),
    }
    sizes = [len(d["e"]) for d in table.values()]
    result["retained_events_per_user_mean"] = sum(sizes) / len(sizes)
    result["state_json_bytes_per_user_mean"] = sum(len(v) for v in json_table.values()) / len(json_table)
    states = [UserFeatureState.from_dict(d) for d in table.values()]
    start = time.perf_counter()
    for state in states:
        state.features()
    result["features_us_per_call"] = (time.perf_counter() - start) / len(states) * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--span-hours", type=float, default=24 * 7)
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.users, int(args.span_hours * 3_600_000)), indent=2))


if __name__ == "__main__":
    main()
