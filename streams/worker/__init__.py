"""The personalization workers, two Faust apps in two processes, built by one factory
(``streams.worker.app.new_app``):

- ``streams.worker.features``: the features agent turns ``events`` into per-user features in
  Feast (see ``streams.worker.features.agent`` for the ordering of table update, Feast write
  and offset commit);
- ``streams.worker.learner``: joins ``decisions`` with rewards and updates the policies,
  exact across crashes through its checkpoints (``streams.worker.learner.agent``).

The Faust-free pieces (``MicroBatcher``, ``FreshnessTracker``) can be used and tested alone.
"""

from streams.worker.features.batching import FlushStats, MicroBatcher
from streams.worker.features.commands import features_status, get_features, run_features, run_worker
from streams.worker.features.freshness import FreshnessTracker
from streams.worker.learner.commands import learner_status, run_learner

__all__ = [
    "FlushStats",
    "FreshnessTracker",
    "MicroBatcher",
    "features_status",
    "get_features",
    "learner_status",
    "run_features",
    "run_learner",
    "run_worker",
]
