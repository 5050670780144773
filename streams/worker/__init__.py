"""The personalization worker: a Faust app whose features agent turns ``events`` into per-user
features in Feast, exactly, across crashes. See ``streams.worker.features_agent`` for the
ordering of table update, Feast write and offset commit, and ``streams.worker.app`` for
table recovery on the embedded broker.

The Faust-free pieces (``MicroBatcher``, ``FreshnessTracker``) can be used and tested alone.
"""

from streams.worker.batching import FlushStats, MicroBatcher
from streams.worker.commands import features_status, get_features, run_features
from streams.worker.freshness import FreshnessTracker
from streams.worker.runner import run_worker

__all__ = [
    "FlushStats",
    "FreshnessTracker",
    "MicroBatcher",
    "features_status",
    "get_features",
    "run_features",
    "run_worker",
]
