"""The personalization workers, two Faust apps in two processes: the features worker, whose
agent turns ``events`` into per-user features in Feast, and the learner (``learner_app``),
which joins ``decisions`` with rewards and updates the policies; each exact across crashes.
See ``streams.worker.features_agent`` for the ordering of table update, Feast write and
offset commit, ``streams.worker.app`` for table recovery on the embedded broker, and
``streams.worker.learner_agent`` for the learner's checkpoints.

The Faust-free pieces (``MicroBatcher``, ``FreshnessTracker``) can be used and tested alone.
"""

from streams.worker.batching import FlushStats, MicroBatcher
from streams.worker.commands import features_status, get_features, learner_status, run_features, run_learner
from streams.worker.freshness import FreshnessTracker
from streams.worker.runner import run_worker

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
