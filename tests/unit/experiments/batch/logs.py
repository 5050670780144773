"""Random logs for the batch tests, an archive written from them, and the metric oracle.

The oracle is the stream's own definition of a metric, applied by brute force: the accepted
exposures (the experiment's variants, inside [start, end), one per id), each user's first by
(ts, exposure_id), and ``experiments.aggregation.windows.contribution`` over every event of
the user (one per id) for each window closed at ``closed_upto``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from experiments.aggregation.stats import SufficientStats
from experiments.aggregation.windows import MetricEvent, contribution
from experiments.batch.archive import Archive, rows_of
from experiments.batch.results import MetricStats
from experiments.spec import ExperimentSpec, parse_spec
from streams.events import Exposure, ListeningEvent

T0 = 1_767_225_600_000
S = 1000  # windows measured in seconds, so that small logs hit every boundary

SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": T0 + 5 * S, "end": T0 + 200 * S, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "plays", "window": {"length": "10s"}},
        {"name": "ms", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "ms_played", "window": {"length": "10s"}, "covariate": {"length": "5s"}},
        {"name": "ret", "role": "guardrail", "kind": "proportion", "direction": "increase",
         "measure": {"agg": "active", "types": ["play", "like"]}, "window": {"delay": "10s", "length": "5s"},
         "margin": 0.01},
        {"name": "skip_rate", "role": "guardrail", "kind": "ratio", "direction": "decrease",
         "numerator": "skips", "denominator": {"agg": "count", "types": ["play", "skip"]},
         "window": {"length": "10s"}, "margin": 0.05},
        {"name": "items", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_items", "window": {"delay": "2s", "length": "6s"}},
        {"name": "genres", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_genres", "window": {"length": "3s"}, "covariate": {"length": "2s"}},
        {"name": "sessions", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "sessions", "window": {"delay": "1s", "length": "20s"}, "covariate": {"length": "30s"}},
    ],
})

Located = tuple[int, int, object]  # (partition, offset, record)


def random_log(seed: int, *, users: int = 6, records: int = 80, partitions: int = 2) -> dict[str, list[Located]]:
    """Events and exposures over ~60 s around the start, on ``partitions`` partitions each, with
    duplicates (the same id again, later in the topic), foreign experiments, unknown variants,
    exposures outside [start, end) and users exposed to both variants."""
    rng = random.Random(seed)
    out: dict[str, list[Located]] = {"events": [], "exposures": []}
    offsets: dict[tuple[str, int], int] = defaultdict(int)

    def put(topic: str, user: str, record: object) -> None:
        partition = int(user[1:]) % partitions
        out[topic].append((partition, offsets[(topic, partition)], record))
        offsets[(topic, partition)] += 1

    for i in range(records):
        user = f"u{rng.randrange(users)}"
        ts = T0 + rng.randrange(-40 * S, 60 * S, rng.choice([1, 500, 1000]))
        roll = rng.random()
        if roll < 0.08 and out["events"]:
            _, _, again = rng.choice(out["events"])
            put("events", again.user_id, again)  # type: ignore[attr-defined]
        elif roll < 0.3:
            experiment = rng.choice(["exp"] * 6 + ["other"])
            variant = rng.choice(["a", "a", "b", "b", "zz"])
            exposure = Exposure(exposure_id=f"x{rng.randrange(10**6)}-{i}", experiment=experiment,
                                variant=variant, user_id=user, ts=ts)
            put("exposures", user, exposure)
            if rng.random() < 0.1:
                put("exposures", user, exposure)
        else:
            etype = rng.choice(["play", "play", "skip", "like", "session_start", "session_end"])
            put("events", user, ListeningEvent(
                event_id=f"e{i}", user_id=user, ts=ts, type=etype,
                item_id=None if etype.startswith("session") else f"i{rng.randrange(4)}",
                genre=rng.choice(["g0", "g1", None]), ms_played=rng.choice([0, 1000, 30_000, 86_400_000])))
    return out


def write_archive(log: dict[str, list[Located]], root: Path, *, batch: int = 25) -> Archive:
    """The log as the archiver would write it: per partition, batches of ``batch`` offsets."""
    archive = Archive(str(root))
    for topic, located in log.items():
        by_partition: dict[int, list[Located]] = defaultdict(list)
        for item in located:
            by_partition[item[0]].append(item)
        for partition, items in by_partition.items():
            for start in range(0, len(items), batch):
                chunk = items[start:start + batch]
                rows = list(rows_of(chunk, topic))
                archive.write_batch(topic, partition, chunk[0][1], chunk[-1][1], rows)
    return archive


def oracle(spec: ExperimentSpec, log: dict[str, list[Located]], closed_upto: int) -> dict[tuple[str, str], dict]:
    events: dict[str, ListeningEvent] = {}
    for _, _, e in log["events"]:
        events.setdefault(e.event_id, e)  # type: ignore[attr-defined]
    exposures: dict[str, Exposure] = {}
    for _, _, x in log["exposures"]:
        assert isinstance(x, Exposure)
        if x.experiment == spec.id and spec.variant(x.variant) and spec.start <= x.ts < spec.end:
            exposures.setdefault(x.exposure_id, x)
    by_user: dict[str, list[MetricEvent]] = defaultdict(list)
    for e in events.values():
        by_user[e.user_id].append(MetricEvent.of(e))
    seen: dict[str, list[Exposure]] = defaultdict(list)
    for x in sorted(exposures.values(), key=lambda x: (x.ts, x.exposure_id)):
        seen[x.user_id].append(x)
    stats: dict[tuple[str, str], SufficientStats] = defaultdict(SufficientStats)
    exposed: dict[str, int] = defaultdict(int)
    multi: dict[str, int] = defaultdict(int)
    for user, xs in seen.items():
        first = xs[0]
        exposed[first.variant] += 1
        multi[first.variant] += len({x.variant for x in xs}) > 1
        for metric in spec.metrics:
            if first.ts + metric.end_offset <= closed_upto:
                stats[(first.variant, metric.name)].add(contribution(metric, by_user[user], first.ts))
    out = {}
    for variant in spec.variants:
        for metric in spec.metrics:
            s = stats[(variant.name, metric.name)]
            ratio, cuped = metric.kind == "ratio", metric.covariate is not None
            out[(variant.name, metric.name)] = {
                "n": s.n, "sum": s.sum, "sum_sq": s.sum_sq,
                "den_sum": s.den_sum if ratio else None, "den_sum_sq": s.den_sum_sq if ratio else None,
                "cross_sum": s.cross_sum if ratio else None,
                "pre_sum": s.pre_sum if cuped else None, "pre_sum_sq": s.pre_sum_sq if cuped else None,
                "pre_cross_sum": s.pre_cross_sum if cuped else None,
                "exposed": exposed[variant.name], "multi_variant_users": multi[variant.name],
            }
    return out


def as_figures(stats: tuple[MetricStats, ...]) -> dict[tuple[str, str], dict]:
    return {
        (s.variant, s.metric): {
            **s.sums(), "n": s.n, "exposed": s.exposed, "multi_variant_users": s.multi_variant_users,
        }
        for s in stats
    }
