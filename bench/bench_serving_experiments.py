"""Benchmark: serving with 1 and with 100 live experiments (10 layers of 10).

``serving_experiments``: the p99 latency of ``POST /recommend`` at a fixed offered load (the
serving process and load generator of ``bench.bench_serving``: a Feast read, the surface
composition, LinUCB's choice, the decision and exposure records logged to the embedded broker)
with 1 experiment and with 100, in alternating rounds (each figure is the median of its rounds'
p99), so the machine's noise falls on both alike. Also, in process without HTTP, the request
path's own time with 1 and 100 experiments (what can grow), and the cost of one ``assign``
(a spec, a user) in microseconds.

    python -m bench.bench_serving_experiments [--rps 300] [--duration 10] [--rounds 3]
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
        params: tuple[dict[str, Any], dict[str, Any]]
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


def http_p99(specs: list[ExperimentSpec], *, rps: float, duration_s: float, warmup_s: float = 2.0,
             users: int = 10_000) -> dict[str, Any]:
    """One round: a broker, the specs, a serving process, and the offered load's latency."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from bench.bench_serving import ROOT, _offer_load, _prepare, _stop, _wait_healthy
    from infra.kafka.broker import EmbeddedBroker, free_port
    from infra.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="tandem-bench-experiments-") as tmp, \
            EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        settings = load_settings({}, bootstrap_servers=broker.bootstrap, topic_prefix="bench.",
                                 state_dir=Path(tmp) / "state")
        _prepare(settings, users=users, specs=specs)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": broker.bootstrap, "TANDEM_TOPIC_PREFIX": "bench.",
               "TANDEM_STATE_DIR": str(settings.state_dir), "PYTHONPATH": str(ROOT)}
        with open(Path(tmp) / "server.log", "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "bench.bench_serving", "--serve", str(port)],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                health = _wait_healthy(url, server, Path(tmp) / "server.log")
                result = _offer_load(url, env, rps=rps, duration_s=duration_s, warmup_s=warmup_s, users=users)
            finally:
                _stop(server)
    assert len(health["experiments"]) == len(specs), "the server did not load every experiment"
    return {k: result[k] for k in ("p50_ms", "p99_ms", "errors", "achieved_rps")}


def over_http(*, rps: float, duration_s: float, rounds: int) -> dict[str, Any]:
    configurations = {"1": live_experiments(1), "100": live_experiments(100)}
    trials: dict[str, list[dict[str, Any]]] = {name: [] for name in configurations}
    for _ in range(rounds):
        for name, specs in configurations.items():
            trials[name].append(http_p99(specs, rps=rps, duration_s=duration_s))
    p99 = {name: sorted(t["p99_ms"] for t in runs)[len(runs) // 2] for name, runs in trials.items()}
    return {
        "serving_experiments": p99,
        "serving_experiments_p99_ratio": round(p99["100"] / p99["1"], 3),
        "serving_experiments_rounds": trials,
        "offered_rps": rps,
    }


def run(*, rps: float = 300.0, duration_s: float = 10.0, rounds: int = 3, requests: int = 20_000) -> dict[str, Any]:
    in_process = request_path(requests=requests)
    return {
        "what": "POST /recommend p99 at a fixed load with 1 vs 100 experiments in 10 layers (median of rounds)",
        **over_http(rps=rps, duration_s=duration_s, rounds=rounds),
        "request_path_in_process": {
            "p99_ms": in_process["serving_experiments"], "detail": in_process["serving_experiments_detail"]},
        "assignment_us_per_experiment": assignment_cost(),
        "target": {"serving_experiments_p99_ratio": "<= 1.2"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=300.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(rps=args.rps, duration_s=args.duration, rounds=args.rounds), indent=2))


if __name__ == "__main__":
    main()
