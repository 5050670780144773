"""The personalization workers, two Faust apps in two processes, built by one factory
(``streams.worker.app.new_app``):

- ``streams.worker.features``: the features agent turns ``events`` into per-user features in
  Feast (see ``streams.worker.features.agent`` for the ordering of table update, Feast write
  and offset commit);
- ``streams.worker.learner``: joins ``decisions`` with rewards and updates the policies,
  exact across crashes through its checkpoints (``streams.worker.learner.agent``).

The Faust-free pieces (``MicroBatcher``, ``FreshnessTracker``) can be used and tested alone.
Shared by both: ``DeadLetters`` (``streams.worker.dead_letters``), the status files
(``streams.worker.status``) and ``run_app`` (``streams.worker.runner``, also
``python -m streams.worker``).
"""

from streams.worker.app import app_id, default_store, new_app
from streams.worker.dead_letters import DeadLetters
from streams.worker.features.batching import FlushStats, MicroBatcher
from streams.worker.features.commands import features_status, get_features, run_features, run_worker
from streams.worker.features.freshness import FreshnessTracker
from streams.worker.learner.commands import learner_status, run_learner
from streams.worker.runner import run_app
from streams.worker.status import consumer_lag, read_status, status_path, worker_status, write_status

__all__ = [
    "DeadLetters",
    "FlushStats",
    "FreshnessTracker",
    "MicroBatcher",
    "app_id",
    "consumer_lag",
    "default_store",
    "features_status",
    "get_features",
    "learner_status",
    "new_app",
    "read_status",
    "run_app",
    "run_features",
    "run_learner",
    "run_worker",
    "status_path",
    "worker_status",
    "write_status",
]
