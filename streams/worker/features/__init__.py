"""The features worker: a Faust app whose agent turns ``events`` into per-user features in Feast.

- ``streams.worker.features.app``: ``make_app``, the app (id ``<prefix>tandem-personalization``)
  with the table ``user-features`` and its timers;
- ``streams.worker.features.agent``: ``FeaturesAdapter``, the per-record logic and the ordering
  of table update, Feast write and offset commit;
- ``streams.worker.features.batching`` and ``freshness``: ``MicroBatcher`` and
  ``FreshnessTracker``, free of Faust and Feast;
- ``streams.worker.features.feast_process``: ``ProcessFeatureWriter``, Feast writes in a process
  of their own;
- ``streams.worker.features.commands``: ``tandem features run | get | status``.

The app, the agent and the writer process are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports
from streams.worker.features.batching import FlushStats, MicroBatcher, RowSource
from streams.worker.features.commands import FEATURES_ONLY, features_status, get_features, run_features, run_worker
from streams.worker.features.freshness import FreshnessTracker

if TYPE_CHECKING:
    from streams.worker.features.agent import FeaturesAdapter, install
    from streams.worker.features.app import APP_NAME, TABLE_NAME, make_app
    from streams.worker.features.feast_process import ProcessFeatureWriter

__all__ = [
    "APP_NAME",
    "FEATURES_ONLY",
    "TABLE_NAME",
    "FeaturesAdapter",
    "FlushStats",
    "FreshnessTracker",
    "MicroBatcher",
    "ProcessFeatureWriter",
    "RowSource",
    "features_status",
    "get_features",
    "install",
    "make_app",
    "run_features",
    "run_worker",
]

#: Exports imported on first use, and their modules.
_LAZY = {
    **dict.fromkeys(("FeaturesAdapter", "install"), "streams.worker.features.agent"),
    **dict.fromkeys(("APP_NAME", "TABLE_NAME", "make_app"), "streams.worker.features.app"),
    "ProcessFeatureWriter": "streams.worker.features.feast_process",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
