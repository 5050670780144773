"""Exposure-anchored experiment metrics: pure window logic, watermark, SQLite state store.

The aggregation worker (``experiments.aggregation.aggregator``: ``Aggregator``, a kafka-python
consumer group around ``AggregationStore``) and its helpers are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.aggregation.state import AggregationState, Anchor
from experiments.aggregation.stats import SufficientStats, metric_record, record_key
from experiments.aggregation.store import (
    INPUTS,
    AggregationStore,
    BatchResult,
    OutboxItem,
    SourceRecord,
    default_topics,
)
from experiments.aggregation.watermark import Partition, WatermarkTracker
from experiments.aggregation.windows import (
    Contribution,
    MetricEvent,
    contribution,
    measure_value,
    touches,
    window_bounds,
)
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.aggregation.aggregator import (
        DEFAULT_ALLOWED_LATENESS_MS,
        Aggregator,
        AggregatorStats,
        SpecFeed,
        database_path,
        group_id,
        open_store,
    )

__all__ = [
    "DEFAULT_ALLOWED_LATENESS_MS",
    "INPUTS",
    "AggregationState",
    "AggregationStore",
    "Aggregator",
    "AggregatorStats",
    "Anchor",
    "BatchResult",
    "Contribution",
    "MetricEvent",
    "OutboxItem",
    "Partition",
    "SourceRecord",
    "SpecFeed",
    "SufficientStats",
    "WatermarkTracker",
    "contribution",
    "database_path",
    "default_topics",
    "group_id",
    "measure_value",
    "metric_record",
    "open_store",
    "record_key",
    "touches",
    "window_bounds",
]

#: Exports imported on first use, and their modules.
_LAZY = dict.fromkeys(
    ("DEFAULT_ALLOWED_LATENESS_MS", "Aggregator", "AggregatorStats", "SpecFeed", "database_path", "group_id",
     "open_store"),
    "experiments.aggregation.aggregator",
)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
