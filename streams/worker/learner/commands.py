"""The learner's entry points: ``tandem learner run | status``."""

from __future__ import annotations

from typing import Any

from infra.kafka.topics import apply_topics
from infra.settings import Settings
from streams.worker.status import worker_status


def run_learner(settings: Settings, *, loglevel: str = "warning", **app_options: Any) -> int:
    """Provision topics, restore or warm-start the learner, run its app until stopped; the exit code."""
    from streams.worker.learner.app import LEARNER_APP_NAME, make_learner_app
    from streams.worker.runner import run_app

    apply_topics(settings)
    guard_learner_state(settings, app_name=app_options.get("app_name", LEARNER_APP_NAME))
    return run_app(make_learner_app(settings, **app_options), loglevel)


def guard_learner_state(settings: Settings, *, app_name: str | None = None) -> None:
    """Refuse (``StaleState``) when the learner's local state was built from another broker log."""
    from streams.worker.app import guard_local_state
    from streams.worker.learner.app import LEARNER_APP_NAME

    guard_local_state(settings, app_name or LEARNER_APP_NAME, consumer="the learner")


def learner_status(settings: Settings) -> dict[str, Any]:
    """``tandem learner status``: the learner's last status (records offered, checkpoints, updates)
    and whether it is running."""
    from streams.worker.learner.app import learner_status_path

    return worker_status(learner_status_path(settings))
