"""A bandit experiment on the real broker: the allocator moves its weights from the streaming aggregates,
serving keeps users who arrived earlier in their variant (across serving processes, through the
sticky-assignments topic) and gives the new weights to users who arrive later."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from experiments.allocation import allocate_once
from experiments.spec import parse_spec, spec_from_json, spec_to_json
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EXPERIMENT_METRICS, EXPERIMENTS, STICKY_ASSIGNMENTS, apply_topics
from infra.settings import Settings
from streams.events import StickyAssignment, decode
from streams.producer import EventPublisher
from tests.helpers import T0_MS, serve_answers

DAY_MS = 86_400_000
SPEC = parse_spec({
    "id": "mab", "salt": "mab/1", "kind": "bandit", "start": T0_MS, "end": T0_MS + 30 * DAY_MS, "control": "a",
    "layer": {"name": "mab-layer"},
    "variants": [{"name": "a", "weight": 0.5, "params": {"num_items": 3}},
                 {"name": "b", "weight": 0.5, "params": {"num_items": 5}}],
    "allocation": {"metric": "plays_1d", "every": "1d", "min_weight": 0.05},
    "metrics": [{"name": "plays_1d", "role": "success", "kind": "mean", "direction": "increase",
                 "measure": "plays", "window": {"length": "1d"}}],
})
EARLY = [f"early-{i}" for i in range(200)]
LATE = [f"late-{i}" for i in range(400)]


async def ask(settings: Settings, users: list[str], ts: int) -> dict[str, dict[str, Any]]:
    """A fresh serving process's answers (its sticky memory comes from the topic alone)."""
    return await serve_answers(settings, [(user, ts) for user in users])


def metric_record(variant: str, n: int, plays: float) -> bytes:
    """What the aggregator publishes for the allocation metric (the parts the allocator reads)."""
    return json.dumps({"experiment": "mab", "variant": variant, "metric": "plays_1d", "n": n, "sum": plays,
                       "sum_sq": plays * 2.0, "watermark_ts": T0_MS + DAY_MS + 1}).encode()


def test_weights_move_by_thompson_sampling_and_earlier_users_keep_their_variant(settings: Settings) -> None:
    apply_topics(settings)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENTS)) as publisher:
        publisher.publish_bytes(b"mab", spec_to_json(SPEC))
    early = asyncio.run(ask(settings, EARLY, T0_MS + 1))
    first = {user: answer["exposed"]["mab"] for user, answer in early.items()}
    assert 60 < Counter(first.values())["b"] < 140  # the first period's 50/50

    # Nothing is due before a day of event time has passed; then b, clearly better, gets the traffic.
    assert allocate_once(settings) == []
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENT_METRICS)) as publisher:
        publisher.publish_bytes(b"mab/a/plays_1d", metric_record("a", 100, 100.0))
        publisher.publish_bytes(b"mab/b/plays_1d", metric_record("b", 100, 200.0))
    (updated,) = allocate_once(settings)
    assert updated.periods[0].start == T0_MS + DAY_MS + 1 and updated.periods[0].weights["b"] > 0.9
    assert allocate_once(settings) == []  # the next period is a day later
    on_topic = spec_from_json(newest_per_key(read_topic(settings, settings.topic(EXPERIMENTS)))[b"mab"].value)
    assert on_topic == updated

    # Every early user logged its assignment once, keyed experiment/user.
    logged = [decode(r.value, StickyAssignment) for r in read_topic(settings, settings.topic(STICKY_ASSIGNMENTS))]
    assert {(s.user_id, s.variant) for s in logged} == set(first.items()) and len(logged) == len(EARLY)

    # A new serving process: the early users keep their variant, the late ones get the new weights.
    later = asyncio.run(ask(settings, EARLY + LATE, T0_MS + 2 * DAY_MS))
    assert {user: later[user]["exposed"]["mab"] for user in EARLY} == first
    assert all(later[u]["params"]["num_items"] == (5 if first[u] == "b" else 3) for u in EARLY)
    late_b = Counter(later[user]["exposed"]["mab"] for user in LATE)["b"]
    assert late_b > 0.8 * len(LATE), late_b
