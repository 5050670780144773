"""The learner's Faust app: its own process, app id and consumer group, beside the features worker.

``make_learner_app(settings)`` builds a Faust app with id ``<topic prefix>tandem-learner``
that runs only the learner agent (``streams.worker.learner.agent``) and writes a status file.
Both are the personalization stack, but they fail and lag apart:

- the learner acknowledges a record only once a checkpoint covering it is stored, and Faust
  commits an offset only once every agent of the app reading it acknowledged it; in one app
  the features agent's commits waited for the learner's checkpoints, and a checkpoint that
  could not be stored held them back with it;
- the two agents shared one event loop and one consumer: in one app the features pipeline
  did 1,409 events/s, alone 1,855-2,135 (``python -m bench.bench_features``, one machine,
  same day; its counting Faust agent did 4,100-4,650).

Its producer writes one record per batch on the embedded broker, as the features app's does:
the restart reads the newest checkpoint up to the topic's end offsets, which that broker
under-reports after a batch of several records (docs/architecture.md), and an older checkpoint than the
committed offsets would lose records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from infra.kafka.topics import DECISIONS, EVENTS
from infra.metrics import METRICS_PORTS
from infra.settings import Settings
from streams.worker.app import new_app
from streams.worker.learner.agent import LearnerAdapter, install_learner
from streams.worker.metrics import WorkerMetrics, learner_families
from streams.worker.status import consumer_lag, partition_lags, write_status

LEARNER_APP_NAME = "tandem-learner"
LEARNER_STATUS_FILE = "learner-worker.json"


def learner_status_path(settings: Settings) -> Path:
    return settings.state_dir / LEARNER_STATUS_FILE


def make_learner_app(
    settings: Settings,
    *,
    status_interval_s: float = 1.0,
    commit_interval_s: float | None = None,
    app_name: str = LEARNER_APP_NAME,
    metrics_port: int | None = METRICS_PORTS["learner"],
) -> Any:
    """The learner app, its learner restored from its newest checkpoint (or warm-started).
    ``/metrics`` is served on loopback ``metrics_port`` (0: any free port, None: not served);
    the port taken is in the status file."""
    app = new_app(settings, app_name, commit_interval_s=commit_interval_s)
    adapter = install_learner(app, settings)
    app.tandem_adapter = adapter  # type: ignore[attr-defined]  # for tests and the status writer
    path = learner_status_path(settings)
    metrics = WorkerMetrics(learner_families)
    inputs = {settings.topic(DECISIONS), settings.topic(EVENTS)}
    app.tandem_metrics = metrics  # type: ignore[attr-defined]
    served: dict[str, int | None] = {"metrics_port": None}

    if metrics_port is not None:
        @app.task
        async def serve_metrics() -> None:
            served["metrics_port"] = metrics.start(metrics_port)

    @app.timer(interval=status_interval_s)
    async def publish_status() -> None:
        status = {**learner_snapshot(app, adapter, inputs=inputs), **served}
        metrics.publish(status)
        write_status(path, status)

    return app


def learner_snapshot(app: Any, adapter: LearnerAdapter, *, inputs: Collection[str] = ()) -> dict[str, Any]:
    """What the learner's status file says: records offered, checkpoints, updates and the input read so far
    (and the lag of each partition of the ``inputs`` topics)."""
    learner = adapter.learner
    read: dict[str, int] = {}
    for (topic, _), position in learner.positions.items():
        read[topic] = read.get(topic, 0) + position
    return {
        "pid": os.getpid(),
        "app_id": app.conf.id,
        "updated_at": time.time(),
        "offered": dict(learner.counts),
        "read": read,  # per input topic, the sum over its partitions of the next offset to read
        "lag": _lag(app, learner.positions),
        "lag_by_partition": partition_lags(app.consumer, [tp for tp in app.consumer.assignment() if tp.topic in inputs],
                                           lambda tp: learner.positions.get((tp.topic, tp.partition))),
        "dead_lettered": adapter.dead_letters.count,
        "windows_closed": learner.learner.joiner.counts["decisions_closed"],
        "waiting": len(adapter.waiting),
        "checkpoints": adapter.checkpoints,
        "checkpoint_failures": adapter.failures,
        "last_checkpoint_bytes": adapter.last_checkpoint_bytes,
        "stats": learner.learner.stats(),
    }


def _lag(app: Any, positions: dict[tuple[str, int], int]) -> int | None:
    """Records of the assigned partitions not read yet; None before the group join and until
    every non-empty one was read from (never a false 0)."""
    assignment = app.consumer.assignment()
    if not assignment:
        return None  # not joined yet
    return consumer_lag(app.consumer, assignment, lambda tp: positions.get((tp.topic, tp.partition)))
