"""The features worker's entry points: ``tandem features run | get USER_ID | status``.

>>> from infra.settings import Settings
>>> features_status(Settings(state_dir=__import__("pathlib").Path("/nonexistent")))["running"]
False
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from infra.kafka.topics import apply_topics
from infra.settings import Settings
from streams.features.online import open_online_store
from streams.worker.status import status_path, worker_status

#: Options of the features worker only, with their defaults; the learner refuses them.
FEATURES_ONLY = {"flush_records": 1000, "flush_ms": 10.0, "persist_interval": None, "store": None,
                 "changelog_batches": False}


def run_worker(settings: Settings, *, loglevel: str = "warning", **app_options: Any) -> int:
    """Provision topics, start the feature-store writer process, run the app until stopped; the exit code."""
    from streams.worker.features.app import APP_NAME, make_app
    from streams.worker.features.feast_process import ProcessFeatureWriter
    from streams.worker.runner import run_app

    apply_topics(settings)
    guard_features_state(settings, app_name=app_options.get("app_name", APP_NAME))
    store = ProcessFeatureWriter(settings.feast_dir)
    try:
        return run_app(make_app(settings, feature_store=store, **app_options), loglevel)
    finally:
        store.close()


def guard_features_state(settings: Settings, *, app_name: str | None = None) -> None:
    """Refuse (``StaleState``) when the worker's tables or online features were built from another
    broker log (``infra.kafka.incarnation``)."""
    from streams.worker.app import guard_local_state
    from streams.worker.features.app import APP_NAME

    guard_local_state(settings, app_name or APP_NAME, consumer="the features worker",
                      also=(settings.feast_dir / "online.db",))


def run_features(settings: Settings) -> int:
    """``tandem features run``: run the features worker in the foreground; the exit code."""
    return run_worker(settings)


def get_features(settings: Settings, user_id: str) -> dict[str, Any]:
    """``tandem features get USER_ID``: the user's online features (defaults for an unknown user)
    and the event time of the stored row (None when there is no row)."""
    store = open_online_store(settings)
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
    lag) and whether it is running."""
    return worker_status(status_path(settings))
