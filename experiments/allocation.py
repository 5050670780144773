"""Multi-armed bandit experiments: new weights by Thompson sampling, as new spec versions.

A bandit experiment (``kind: bandit``) starts with its variants' weights. Every
``allocation.every`` of event time the allocator reads the streaming aggregates of the success
metric (``experiment-metrics``), puts a normal posterior on each variant's mean
(``N(mean, variance / n)``), estimates by seeded Monte Carlo the probability that each variant
is the best, floors it at ``min_weight`` (``w = min_weight + (1 - K min_weight) p``) and appends a
``Period`` with those weights to the spec: a new version on the experiments topic, so the weights'
history is the spec's history. Users who arrived earlier keep their variant (sticky assignment);
only users arriving in the new period get the new weights. The inference that stays valid under
moving weights is in ``experiments.stats.periods``.

>>> weights = thompson_weights({"a": ArmStats(400, 120.0, 120.0), "b": ArmStats(400, 200.0, 200.0)},
...                            direction="increase", min_weight=0.05, seed=1)
>>> weights["b"] > 0.9
True
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import Any

import numpy as np

from experiments.spec import ExperimentSpec, parse_spec, spec_to_json
from experiments.stats.moments import Moments
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EXPERIMENT_METRICS
from infra.settings import Settings

logger = logging.getLogger(__name__)


#: A variant's sufficient statistics of the allocation metric.
ArmStats = Moments


def thompson_weights(
    arms: Mapping[str, ArmStats], *, direction: str, min_weight: float, seed: int, draws: int = 20_000
) -> dict[str, float]:
    """Each arm's weight: its posterior probability of being the best, floored at ``min_weight``."""
    names = sorted(arms)
    rng = np.random.default_rng(seed)
    means = np.array([arms[k].mean for k in names])
    scales = np.array([math.sqrt(max(arms[k].variance, 1e-12) / arms[k].n) for k in names])
    samples = rng.normal(means, scales, size=(draws, len(names)))
    best = samples.argmax(axis=1) if direction == "increase" else samples.argmin(axis=1)
    shares = np.bincount(best, minlength=len(names)) / draws
    floor = min_weight * len(names)
    weights = {name: float(min_weight + (1.0 - floor) * share) for name, share in zip(names, shares, strict=True)}
    # Exact sum 1 for the spec's check: the largest weight takes the rounding slack.
    top = max(weights, key=lambda k: weights[k])
    weights[top] = 1.0 - sum(w for k, w in weights.items() if k != top)
    return weights


def arm_stats(records: Iterable[Mapping[str, Any]], *, experiment: str, metric: str) -> dict[str, ArmStats]:
    """Per variant, the metric's closed-window statistics from ``experiment-metrics`` records (newest per
    key already taken), summing per-partition partials."""
    totals: dict[str, list[float]] = {}
    for record in records:
        if record.get("experiment") != experiment or record.get("metric") != metric:
            continue
        row = totals.setdefault(str(record["variant"]), [0, 0.0, 0.0])
        row[0] += int(record["n"])
        row[1] += float(record["sum"])
        row[2] += float(record["sum_sq"])
    return {variant: ArmStats(int(n), s, q) for variant, (n, s, q) in totals.items()}


def period_seed(spec: ExperimentSpec) -> int:
    """A seed fixed by the experiment and the number of periods: the same inputs give the same weights."""
    digest = blake2b(f"{spec.salt}\x1f{len(spec.periods)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def next_period(
    spec: ExperimentSpec, records: Iterable[Mapping[str, Any]], *, at_ms: int, min_users: int = 20
) -> ExperimentSpec | None:
    """The spec's next version with a new period starting at ``at_ms`` (event time: the aggregates'
    watermark), or None when it is not due (``every`` since the last period's start), the experiment
    is not running then, or some variant has fewer than ``min_users`` closed windows."""
    allocation = spec.allocation
    if spec.kind != "bandit" or allocation is None or not spec.start <= at_ms < spec.end:
        return None
    last_start = spec.periods[-1].start if spec.periods else spec.start
    if at_ms < last_start + allocation.every:
        return None
    stats = arm_stats(records, experiment=spec.id, metric=allocation.metric)
    if any(stats.get(v.name) is None or stats[v.name].n < max(min_users, 2) for v in spec.variants):
        return None
    metric = spec.metric(allocation.metric)
    assert metric is not None  # the spec's validation guarantees it
    weights = thompson_weights(stats, direction=metric.direction, min_weight=allocation.min_weight,
                               seed=period_seed(spec))
    data = json.loads(spec_to_json(spec))
    data["periods"] = [*data.get("periods", []), {"start": at_ms, "weights": weights}]
    for written_by_the_lifecycle in ("status", "history"):
        data.pop(written_by_the_lifecycle, None)
    return parse_spec(data)  # validated again: the weights cover the variants and sum to 1


def allocate_once(settings: Settings) -> list[ExperimentSpec]:
    """One round of the allocator process: every running bandit experiment whose next period is due
    (event time: the lowest watermark among its metric records) gets a new version, through the
    lifecycle (who: the allocator, why: the new weights), on the experiments topic."""
    from experiments.lifecycle import apply_spec, publish_spec, read_specs

    bandits = [spec for spec in read_specs(settings).values() if spec.kind == "bandit" and spec.status == "running"]
    if not bandits:
        return []
    metrics = [json.loads(r.value) for r in newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
               .values() if r.value]
    updated = []
    for spec in bandits:
        mine = [r for r in metrics if r.get("experiment") == spec.id]
        if not mine:
            continue
        proposed = next_period(spec, mine, at_ms=min(int(r["watermark_ts"]) for r in mine))
        if proposed is None:
            continue
        period = proposed.periods[-1]
        weights = ", ".join(f"{k} {w:.3f}" for k, w in sorted(period.weights.items()))
        version = apply_spec(spec, proposed, who="tandem-allocator", at=period.start,
                             why=f"bandit period {len(proposed.periods)}: {weights}")
        publish_spec(settings, version)
        logger.info("bandit %s: period %d from %d, weights %s", version.id, len(version.periods), period.start, weights)
        updated.append(version)
    return updated
