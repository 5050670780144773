"""Three live experiments in two layers and a holdout, through real serving, broker and aggregator.

Every response carries the composed parameters; the exposures topic holds exactly one exposure
per experiment whose parameter shaped each response; and the aggregator's figures for every
experiment equal an oracle computed straight from the topics (first exposure per user and
experiment, the metric over its closed window).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from experiments.aggregation.windows import MetricEvent, contribution
from experiments.assignment import compose
from experiments.report.interactions import first_exposures
from experiments.spec import ExperimentSpec, parse_spec, spec_to_json
from experiments.surfaces import load_surfaces
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import EventType, Exposure, ListeningEvent, decode, encode
from streams.producer import EventPublisher
from tests.helpers import T0_MS, serve_answers

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
USERS = [f"user-{i:04d}" for i in range(400)]
SERVED_AT = T0_MS + DAY_MS
#: Users served and listening late, on every partition, so every input partition's watermark passes
#: every window of USERS (their own windows stay open: the oracle leaves them out).
CLOCK_USERS = [f"clock-{k}" for k in range(64)]
CLOCK_AT = SERVED_AT + 12 * DAY_MS
METRIC = {"name": "plays_7d", "role": "success", "kind": "mean", "direction": "increase", "measure": "plays",
          "window": {"length": "7d"}}


def spec(id: str, variants: list[dict], **extra: Any) -> ExperimentSpec:
    return parse_spec({"id": id, "salt": f"{id}/1", "start": T0_MS, "end": T0_MS + 60 * DAY_MS, "control": "a",
                       "variants": variants, "metrics": [METRIC], **extra})


RANKERS = [{"name": "a", "weight": 0.5, "policy": "popularity"}, {"name": "b", "weight": 0.5, "policy": "linucb"}]
SPECS = [
    spec("rank_left", RANKERS, layer={"name": "ranking", "buckets": [0, 4000]}),
    spec("rank_right", RANKERS, layer={"name": "ranking", "buckets": [4000, 10_000]}),
    spec("layout", [{"name": "a", "weight": 0.5, "params": {"num_items": 3}},
                    {"name": "b", "weight": 0.5, "params": {"num_items": 1}}], layer={"name": "layout"}),
    spec("holdout", [{"name": "a", "weight": 0.1}, {"name": "b", "weight": 0.9}], kind="holdout"),
]


async def serve_everyone(settings: Settings) -> dict[str, dict[str, Any]]:
    return await serve_answers(settings, [(u, SERVED_AT) for u in USERS] + [(u, CLOCK_AT) for u in CLOCK_USERS])


def listening(rng: random.Random) -> list[ListeningEvent]:
    """Plays inside and after the users' windows, and late 'clock' plays of many users so that every
    partition's watermark passes every window."""
    events = []
    for user in USERS:
        for k in range(rng.randrange(0, 6)):
            ts = SERVED_AT + rng.randrange(0, 9 * DAY_MS)
            events.append(ListeningEvent(event_id=f"{user}-{k}", user_id=user, ts=ts, type=EventType.PLAY,
                                         item_id="i", genre="jazz", ms_played=1000))
    for user in CLOCK_USERS:
        events.append(ListeningEvent(event_id=f"{user}-0", user_id=user, ts=CLOCK_AT, type=EventType.PLAY,
                                     item_id="i", genre="jazz", ms_played=1000))
    return sorted(events, key=lambda e: e.ts)


def aggregate(settings: Settings, log: Path) -> None:
    env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix, "TANDEM_STATE_DIR": str(settings.state_dir)}
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "infra.cli", "experiments", "aggregate", "--allowed-lateness",
                               "30m", "--idle-exit", "5"], env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=600, check=False)
    assert done.returncode == 0, log.read_text()[-3000:]


def stream_figures(settings: Settings) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(experiment, variant) -> (n, sum, sum_sq), summing per-partition partials where keys carry one."""
    out: dict[tuple[str, str], list[float]] = {}
    for record in newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS))).values():
        if record.value is None:
            continue
        value = json.loads(record.value)
        totals = out.setdefault((value["experiment"], value["variant"]), [0, 0.0, 0.0])
        totals[0] += value["n"]
        totals[1] += value["sum"]
        totals[2] += value["sum_sq"]
    return {k: (int(n), s, q) for k, (n, s, q) in out.items()}


def oracle_figures(exposures: list[Exposure], events: list[ListeningEvent]) -> dict[tuple[str, str], tuple]:
    first = first_exposures(SPECS, exposures)
    by_user: dict[str, list[MetricEvent]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(MetricEvent.of(event))
    out: dict[tuple[str, str], list[float]] = {(s.id, v.name): [0, 0.0, 0.0] for s in SPECS for v in s.variants}
    for spec_ in SPECS:
        metric = spec_.metrics[0]
        for user, anchor in first[spec_.id].items():
            if user in CLOCK_USERS:
                continue  # windows still open
            value = contribution(metric, by_user.get(user, ()), anchor.ts).value
            totals = out[(spec_.id, anchor.variant)]
            totals[0] += 1
            totals[1] += value
            totals[2] += value * value
    return {k: (int(n), s, q) for k, (n, s, q) in out.items()}


@pytest.mark.timeout(900)
def test_three_experiments_in_two_layers_and_a_holdout_serve_expose_and_aggregate_exactly(
    settings: Settings, tmp_path: Path
) -> None:
    apply_topics(settings)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENTS)) as publisher:
        for s in SPECS:
            publisher.publish_bytes(s.id.encode(), spec_to_json(s))
    answers = asyncio.run(serve_everyone(settings))

    # Every response is the surface's defaults overlaid with the user's variants.
    home = load_surfaces()["home"]
    expected_exposures: Counter[str] = Counter()
    for user, answer in answers.items():
        composed = compose(home, SPECS, user, at_ms=CLOCK_AT if user in CLOCK_USERS else SERVED_AT)
        assert answer["params"]["num_items"] == composed.values["num_items"]
        assert answer["params"]["ranker"]["policy"] == composed.values["ranker"].policy == answer["policy"]
        assert answer["assignments"] == composed.assignments
        held_out = composed.holdout == ("holdout", "a")
        expected = {"holdout": composed.holdout[1]} if held_out else composed.assignments
        assert answer["exposed"] == expected, (user, answer)
        assert not ("rank_left" in expected and "rank_right" in expected)
        expected_exposures.update(expected.keys())
    assert expected_exposures["holdout"] == len(USERS) + len(CLOCK_USERS)
    assert min(expected_exposures[s.id] for s in SPECS) > 20

    # The exposures topic holds exactly those, keyed by user, each naming the parameters it set.
    exposures = [(r.key, decode(r.value, Exposure)) for r in read_topic(settings, settings.topic(EXPOSURES))]
    assert Counter(e.experiment for _, e in exposures) == expected_exposures
    for key, exposure in exposures:
        assert key == exposure.user_id.encode() and exposure.surface == "home"
        assert answers[exposure.user_id]["exposed"][exposure.experiment] == exposure.variant
        assert exposure.params == {"rank_left": ["ranker"], "rank_right": ["ranker"], "layout": ["num_items"],
                                   "holdout": []}[exposure.experiment]

    # The aggregator's figures of every experiment equal the oracle's.
    events = listening(random.Random(5))
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for event in events:
            publisher.publish_bytes(event.user_id.encode(), encode(event))
    aggregate(settings, tmp_path / "aggregator.log")
    expected_figures = oracle_figures([e for _, e in exposures], events)
    assert stream_figures(settings) == expected_figures  # integer counts: sums are exact
    clock_exposures = sum(len(answers[user]["exposed"]) for user in CLOCK_USERS)
    assert sum(n for n, _, _ in expected_figures.values()) == sum(expected_exposures.values()) - clock_exposures
