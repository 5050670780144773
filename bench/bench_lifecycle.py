"""Benchmark of the automatic stop: from the metric update that crosses the bound to serving's change.

On an embedded broker, in one process: the serving service (its live-config reader on the
``experiments`` topic, features from memory), the console with its automatic stop (following
``experiment-metrics``), and a stand-in for the aggregator that publishes the records of a
harmful experiment day by day (retention 60 % in control, 30 % in treatment). The clock starts
when the broker acknowledges the update that makes the guardrail significantly worse and
stops at the first response of serving that no longer exposes the treatment to a treated
user. Five runs, each with its own topics. Prints JSON; asserts nothing.

    python -m bench.bench_lifecycle [--runs 5]

Key ``lifecycle.stop_to_serving_s``: ``{"median": s, "max": s}``; target <= 5 s on the
embedded profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000
T0_MS = 1_767_225_600_000
USERS_PER_DAY = 200


def guarded_spec(experiment: str) -> Any:
    from experiments.spec import parse_spec

    return parse_spec({
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
    })


def day_records(experiment: str, day: int, harmful_from_day: int) -> list[tuple[str, dict[str, Any]]]:
    """The cumulative records after ``day`` days: ``USERS_PER_DAY`` users a day in each variant, retained
    at 60 %, the treatment's at 30 % from ``harmful_from_day`` on."""
    out = []
    n = USERS_PER_DAY * day
    for variant in ("control", "treatment"):
        active = float(sum(round(USERS_PER_DAY * _rates(d, harmful_from_day)[variant]) for d in range(1, day + 1)))
        plays = 3.0 * n  # three plays a user on average, variance 2
        base = {"v": 1, "experiment": experiment, "variant": variant, "exposed": n, "in_progress": 0,
                "watermark_ts": T0_MS + day * DAY_MS, "late_records": 0, "multi_variant_users": 0, "n": n}
        out.append((f"{experiment}/{variant}/retention_d7", {
            **base, "record_id": f"{day}r{variant}", "metric": "retention_d7", "kind": "proportion",
            "role": "guardrail", "sum": active, "sum_sq": active}))
        out.append((f"{experiment}/{variant}/plays_7d", {
            **base, "record_id": f"{day}p{variant}", "metric": "plays_7d", "kind": "mean", "role": "success",
            "sum": plays, "sum_sq": n * (9.0 + 2.0)}))
    return out


class DefaultFeatures:
    def __init__(self) -> None:
        from streams.features import default_features

        self.defaults = default_features()

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        return {user: dict(self.defaults) for user in user_ids}


def treated_user(spec: Any) -> str:
    from experiments.assignment import assign

    return next(f"user-{i}" for i in range(10_000) if assign(spec, f"user-{i}") == "treatment")


async def stop_to_serving(settings: Any, *, harmful_from_day: int = 3, days: int = 10,
                          timeout_s: float = 60.0) -> dict[str, Any]:
    """One run on ``settings``' (fresh) topics: the seconds from the crossing update to serving's change,
    the day it crossed, and the stop's recorded reason."""
    from experiments.console import open_console
    from experiments.lifecycle import apply_spec, publish_spec
    from infra.kafka.config import producer_config
    from infra.kafka.producer import KafkaPublisher
    from infra.kafka.topics import EXPERIMENT_METRICS, apply_topics
    from streams.serving import ServingConfig, build_service
    from streams.serving.request import RecommendRequest

    apply_topics(settings)
    experiment = f"harm-{uuid.uuid4().hex[:6]}"
    spec = guarded_spec(experiment)
    publish_spec(settings, apply_spec(None, spec, who="bench", at=T0_MS))
    user = treated_user(spec)
    request = RecommendRequest(user_id=user, ts=T0_MS + DAY_MS)
    service = build_service(settings, features=DefaultFeatures(), config=ServingConfig()).start()
    metrics = KafkaPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENT_METRICS))
    try:
        assert (await service.recommend(request))["experiment"] == experiment, "the treated user is not exposed"
        crossing = crossing_day(spec, harmful_from_day=harmful_from_day, days=days)
        with open_console(settings) as running:
            for day in range(1, crossing + 1):
                if day == crossing:  # everything before it is in, and did not stop the experiment
                    await _consumed(running, experiment, records=4 * (day - 1), timeout_s=timeout_s)
                    if running.console.state.spec(experiment).status != "running":
                        raise RuntimeError(f"{experiment} stopped before the crossing update")
                for key, record in day_records(experiment, day, harmful_from_day):
                    metrics.publish_bytes(key.encode(), json.dumps(record).encode())
                metrics.flush()
            crossed_at = time.monotonic()  # the broker acknowledged the crossing update
            deadline = crossed_at + timeout_s
            while (await service.recommend(request))["experiment"] is not None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"serving still exposes {experiment} {timeout_s} s after the crossing")
                await asyncio.sleep(0.005)
            changed_at = time.monotonic()
            reason = running.console.state.spec(experiment).history[-1].why
    finally:
        metrics.close()
        await asyncio.to_thread(service.close, 5.0)
    return {"seconds": changed_at - crossed_at, "crossed_day": crossing, "reason": reason}


def _rates(day: int, harmful_from_day: int) -> dict[str, float]:
    return {"control": 0.6, "treatment": 0.3 if day >= harmful_from_day else 0.6}


def crossing_day(spec: Any, *, harmful_from_day: int, days: int) -> int:
    """The first day whose records make the monitor stop the experiment (the records are deterministic)."""
    from experiments.monitor import evaluate

    for day in range(1, days + 1):
        if evaluate(spec, [r for _, r in day_records(spec.id, day, harmful_from_day)]).stop:
            return day
    raise RuntimeError(f"no day up to {days} crosses the bound")


async def _consumed(running: Any, experiment: str, *, records: int, timeout_s: float) -> None:
    """Wait until the console has read ``records`` metric records of ``experiment``."""
    deadline = time.monotonic() + timeout_s
    while len(running.console.state.versions(experiment)) < records:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the console read {len(running.console.state.versions(experiment))} of {records}")
        await asyncio.sleep(0.01)


def run(*, runs: int = 5) -> dict[str, Any]:
    from infra.kafka.broker import EmbeddedBroker
    from infra.settings import load_settings

    seconds: list[float] = []
    days: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        for number in range(runs):
            settings = load_settings({}, bootstrap_servers=broker.bootstrap,
                                     topic_prefix=f"b{number}{uuid.uuid4().hex[:6]}.",
                                     state_dir=Path(tmp) / f"state{number}")
            result = asyncio.run(stop_to_serving(settings))
            seconds.append(result["seconds"])
            days.append(result["crossed_day"])
    return {
        "lifecycle.stop_to_serving_s": {"median": round(statistics.median(seconds), 3), "max": round(max(seconds), 3)},
        "runs_s": [round(s, 3) for s in seconds],
        "crossed_on_day": days,
        "target_s": 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(runs=args.runs), indent=2))


if __name__ == "__main__":
    main()
