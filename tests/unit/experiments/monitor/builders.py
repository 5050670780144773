"""Seeded ``experiment-metrics`` records of a two-variant experiment, look after look."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from experiments.spec import ExperimentSpec, parse_spec
from tests.helpers import T0_MS

DAY_MS = 86_400_000


def guarded_spec(experiment: str = "guarded", **changes: Any) -> ExperimentSpec:
    data: dict[str, Any] = {
        "id": experiment, "salt": f"{experiment}/1", "start": T0_MS, "end": T0_MS + 60 * DAY_MS,
        "control": "control",
        "variants": [{"name": "control", "weight": 0.5, "policy": "popularity"},
                     {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
        "metrics": [
            {"name": "plays_7d", "role": "success", "kind": "mean", "direction": "increase", "measure": "plays",
             "window": {"length": "7d"}},
            {"name": "retention_d7", "role": "guardrail", "kind": "proportion", "direction": "increase",
             "measure": "active", "window": {"delay": "7d", "length": "1d"}, "margin": 0.01},
        ],
    }
    data.update(changes)
    return parse_spec(data)


def looks(spec: ExperimentSpec, *, seed: int, retention: dict[str, float], users_per_look: int, count: int,
          partitions: int = 1) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``count`` looks; each yields the (key, record) versions published since the previous look.

    Users of both variants arrive at ``users_per_look`` each per look (one look a day of event
    time); plays are Poisson(3)-like sums of Bernoullis, retention Bernoulli(``retention[variant]``).
    With ``partitions`` > 1 each record is split into per-partition partials keyed ``.../p``.
    """
    rng = random.Random(seed)
    totals = {(v.name, m.name): [0, 0.0, 0.0] for v in spec.variants for m in spec.metrics}
    for look in range(count):
        watermark = spec.start + (look + 1) * DAY_MS
        out = []
        for variant in spec.variants:
            for metric in spec.metrics:
                acc = totals[(variant.name, metric.name)]
                for _ in range(users_per_look):
                    if metric.kind == "proportion":
                        y = 1.0 if rng.random() < retention[variant.name] else 0.0
                    else:
                        y = float(sum(rng.random() < 0.3 for _ in range(10)))
                    acc[0] += 1
                    acc[1] += y
                    acc[2] += y * y
                for part in range(partitions):
                    share = (acc[0] * (part + 1)) // partitions - (acc[0] * part) // partitions
                    frac = share / acc[0]
                    record = {
                        "v": 1, "record_id": f"{look}-{part}", "experiment": spec.id, "variant": variant.name,
                        "metric": metric.name, "kind": metric.kind, "role": metric.role, "n": share,
                        "sum": acc[1] * frac, "sum_sq": acc[2] * frac, "exposed": share, "in_progress": 0,
                        "watermark_ts": watermark, "late_records": 0, "multi_variant_users": 0,
                    }
                    if metric.kind == "proportion":
                        record["sum"] = record["sum_sq"] = float(round(acc[1] * frac))
                    key = f"{spec.id}/{variant.name}/{metric.name}"
                    out.append((f"{key}/{part}" if partitions > 1 else key, record))
        yield out
