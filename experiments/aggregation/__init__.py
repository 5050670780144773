"""Exposure-anchored experiment metrics: pure window logic, watermark, SQLite state store."""

from experiments.aggregation.state import AggregationState, Anchor
from experiments.aggregation.stats import SufficientStats, metric_record, record_key
from experiments.aggregation.store import AggregationStore, BatchResult, OutboxItem, SourceRecord, default_topics
from experiments.aggregation.watermark import WatermarkTracker
from experiments.aggregation.windows import Contribution, MetricEvent, contribution, measure_value

__all__ = [
    "AggregationState",
    "AggregationStore",
    "Anchor",
    "BatchResult",
    "OutboxItem",
    "Contribution",
    "MetricEvent",
    "SourceRecord",
    "SufficientStats",
    "WatermarkTracker",
    "contribution",
    "default_topics",
    "measure_value",
    "metric_record",
    "record_key",
]
