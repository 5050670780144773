"""Exposure-anchored experiment metrics: pure window logic, watermark, the state store (SQLite or
PostgreSQL, per input partition, fenced) and the partial records readers sum (docs/aggregation.md).

The aggregation worker (``experiments.aggregation.aggregator``: ``Aggregator``, a kafka-python
consumer group around ``AggregationStore``) and its helpers are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.aggregation.foldable import MAX_PRE_PERIOD_MS, check_foldable
from experiments.aggregation.state import AggregationState, Anchor
from experiments.aggregation.stats import SufficientStats, merge_partials, metric_record, record_key
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
    "MAX_PRE_PERIOD_MS",
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
    "check_foldable",
    "contribution",
    "database_path",
    "default_topics",
    "group_id",
    "measure_value",
    "merge_partials",
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
