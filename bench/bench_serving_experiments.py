"""Benchmark: serving's request path with 1 and with 100 live experiments (10 layers of 10).

The request path is measured in process, without HTTP: the surface composition (holdout,
every layer's bucket, the variant of each experiment the user is in), the ranker's choice
(LinUCB on the user's features), the decision and one exposure per experiment whose parameter
shaped the response. HTTP, the feature read and the log are the same with 1 or 100
experiments, so this is the part that can grow; ``bench.bench_serving`` measures them. The two
configurations run in alternating rounds of the same users, so the machine's noise falls on
both alike. Also: the cost of one ``assign`` (a spec, a user) in microseconds.

    python -m bench.bench_serving_experiments [--requests 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from experiments.assignment import assign
from experiments.spec import ExperimentSpec, parse_spec
from streams.features import default_features
from streams.serving import DEFAULT_ARMS, LiveConfig, Recommender

T0_MS = 1_767_225_600_000
DAY_MS = 86_400_000
METRICS = [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase", "measure": "plays",
            "window": {"length": "7d"}}]


def experiment(index: int, *, layer: str, buckets: tuple[int, int], params: tuple[dict, dict]) -> ExperimentSpec:
    return parse_spec({
        "id": f"exp-{index:03d}", "salt": f"exp-{index:03d}/1", "surface": "home", "start": T0_MS,
        "end": T0_MS + 60 * DAY_MS, "control": "control", "layer": {"name": layer, "buckets": list(buckets)},
        "variants": [{"name": "control", "weight": 0.5, "params": params[0]},
                     {"name": "treatment", "weight": 0.5, "params": params[1]}],
        "metrics": METRICS,
    })


def live_experiments(count: int) -> list[ExperimentSpec]:
    """``count`` experiments in ``ceil(count / 10)`` layers; each layer split in 10 bucket ranges.
    The first layer's experiments set the ranker, the second's ``num_items``; a parameter belongs
    to one layer and the home surface has two, so the other layers' experiments set none (A/A
    tests, as far as parameters go): the request still hashes, assigns and exposes them."""
    specs = []
    for index in range(count):
        layer, slot = divmod(index, 10)
        width = 10_000 // min(10, count)
        buckets = (slot * width, (slot + 1) * width if slot < 9 and count > 1 else 10_000)
        if layer == 0:
            params = ({"ranker": {"policy": "popularity"}}, {"ranker": {"policy": "linucb"}})
        elif layer == 1:
            params = ({"num_items": 3}, {"num_items": 5})
        else:
            params = ({}, {})
        specs.append(experiment(index, layer=f"layer-{layer}", buckets=buckets, params=params))
    return specs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _recommender(specs: list[ExperimentSpec]) -> Recommender:
    from experiments.spec import spec_to_json

    live = LiveConfig()
    for spec in specs:
        live.apply_spec(spec.id.encode(), spec_to_json(spec))
    return Recommender(live=live, arms=DEFAULT_ARMS)


def request_path(*, requests: int, rounds: int = 20, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    features = default_features()
    users = [f"user-{rng.randrange(10**9)}" for _ in range(requests // rounds)]
    configurations = {"1": _recommender(live_experiments(1)), "100": _recommender(live_experiments(100))}
    timings: dict[str, list[float]] = {name: [] for name in configurations}
    exposures: dict[str, int] = dict.fromkeys(configurations, 0)
    for _ in range(rounds):
        for name, recommender in configurations.items():
            out = timings[name]
            for user in users:
                began = time.perf_counter()
                result = recommender.recommend(user, features=features, ts_ms=T0_MS + DAY_MS)
                result.response()
                out.append(time.perf_counter() - began)
                exposures[name] += len(result.exposures)
    summary = {name: {"p50_ms": round(_percentile(t, 0.5) * 1e3, 4), "p99_ms": round(_percentile(t, 0.99) * 1e3, 4),
                      "mean_us": round(sum(t) / len(t) * 1e6, 1),
                      "exposures_per_request": round(exposures[name] / len(t), 2)}
               for name, t in timings.items()}
    return {
        "serving_experiments": {name: s["p99_ms"] for name, s in summary.items()},
        "serving_experiments_p99_ratio": round(summary["100"]["p99_ms"] / summary["1"]["p99_ms"], 3),
        "serving_experiments_detail": summary,
        "requests_per_configuration": len(users) * rounds,
    }


def assignment_cost(*, users: int = 50_000) -> float:
    """Microseconds per ``assign`` of one layered spec to one user."""
    spec = live_experiments(10)[3]
    ids = [f"user-{i}" for i in range(users)]
    began = time.perf_counter()
    for user in ids:
        assign(spec, user, at_ms=T0_MS + DAY_MS)
    return round((time.perf_counter() - began) / users * 1e6, 3)


def run(*, requests: int = 20_000) -> dict[str, Any]:
    return {
        "what": "in-process request path (composition, LinUCB choice, records); 1 vs 100 experiments in 10 layers",
        **request_path(requests=requests),
        "assignment_us_per_experiment": assignment_cost(),
        "target": {"serving_experiments_p99_ratio": "<= 1.2"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(run(requests=args.requests), indent=2))


if __name__ == "__main__":
    main()
