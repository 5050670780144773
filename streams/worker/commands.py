"""Plain functions behind ``tandem features run | get USER_ID | status`` and ``tandem learner run | status``.

>>> from infra.settings import Settings
>>> features_status(Settings(state_dir=__import__("pathlib").Path("/nonexistent")))["running"]
False
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.settings import Settings
from streams.worker.status import read_status, status_path

#: A worker whose status file is older than this is taken as stopped.
STALE_AFTER_S = 5.0


def run_features(settings: Settings) -> int:
    """``tandem features run``: run the features worker in the foreground; the exit code."""
    from streams.worker.runner import run_worker

    return run_worker(settings)


def run_learner(settings: Settings) -> int:
    """``tandem learner run``: run the learner's worker in the foreground; the exit code."""
    from streams.worker.runner import run_learner as run

    return run(settings)


def get_features(settings: Settings, user_id: str) -> dict[str, Any]:
    """``tandem features get USER_ID``: the user's online features (defaults for an unknown user)
    and the event time of the stored row (None when there is no row)."""
    from streams.worker.runner import open_feature_store

    store = open_feature_store(settings)
    try:
        features = store.read([user_id])[user_id]
        freshness = store.freshness(user_id, now=int(time.time() * 1000))
    finally:
        store.close()
    event_time = freshness.event_time
    return {
        "user_id": user_id,
        "found": event_time is not None,
        "event_time": event_time.astimezone(UTC).isoformat() if isinstance(event_time, datetime) else None,
        "features": features,
    }


def features_status(settings: Settings) -> dict[str, Any]:
    """``tandem features status``: the worker's last status (counters, flushes, freshness p50/p99,
    lag) and whether it is running (its status file is younger than ``STALE_AFTER_S``)."""
    return _status(status_path(settings))


def learner_status(settings: Settings) -> dict[str, Any]:
    """``tandem learner status``: the learner's last status (records offered, checkpoints, updates)
    and whether it is running."""
    from streams.worker.learner_app import learner_status_path

    return _status(learner_status_path(settings))


def _status(path: Path) -> dict[str, Any]:
    status = read_status(path)
    return {
        "running": status is not None and status["age_s"] < STALE_AFTER_S,
        "status_file": str(path),
        "status": status,
    }
