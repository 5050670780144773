"""A synthetic exposure-and-outcome log with no late records, for tests and benchmarks.

Records come out in event-time order, so every partition they are published to
is in event-time order too: nothing is late whatever the interleaving of
partitions at the consumer, and the final figures do not depend on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.assignment import assign
from experiments.spec import ExperimentSpec
from streams.events import EventType, Exposure, ListeningEvent

DAY_MS = 24 * 3600 * 1000
GENRES = ("pop", "rock", "jazz", "hiphop", "classical", "electronic", "folk", "metal")


@dataclass(frozen=True)
class SyntheticLog:
    exposures: list[Exposure]
    events: list[ListeningEvent]


def synthetic_log(spec: ExperimentSpec, *, users: int, days: int, seed: int) -> SyntheticLog:
    """Users listening from a week before the start to ``days`` after; exposed on each visit
    from a random moment of the first week on, as serving would."""
    rng = random.Random(seed)
    exposures: list[Exposure] = []
    events: list[ListeningEvent] = []
    for number in range(users):
        user = f"user-{number:05d}"
        variant = assign(spec, user)
        first = spec.start + rng.randrange(7 * DAY_MS)
        activity = rng.uniform(0.2, 0.9) + (0.05 if variant == "treatment" else 0.0)
        for day in range(-7, days):
            if rng.random() > activity:
                continue
            ts = spec.start + day * DAY_MS + rng.randrange(DAY_MS - 3_600_000)
            if variant is not None and ts >= first:  # serving exposes on every visit; the first one counts
                exposures.append(
                    Exposure(
                        exposure_id=f"x-{user}-{day}", experiment=spec.id, variant=variant, user_id=user, ts=ts
                    )
                )
            for step in range(rng.randint(1, 4)):
                kind = EventType.SKIP if rng.random() < 0.3 else EventType.PLAY
                genre = rng.choice(GENRES)
                played = rng.randrange(1_000, 9_000) if kind is EventType.SKIP else rng.randrange(30_000, 240_000)
                events.append(
                    ListeningEvent(
                        event_id=f"e-{user}-{day}-{step}",
                        user_id=user,
                        ts=ts + step * 60_000,
                        type=kind,
                        item_id=f"{genre}-{rng.randrange(40)}",
                        genre=genre,
                        ms_played=played,
                    )
                )
    exposures.sort(key=lambda record: (record.ts, record.exposure_id))
    events.sort(key=lambda record: (record.ts, record.event_id))
    return SyntheticLog(exposures=exposures, events=events)
