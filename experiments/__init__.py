"""The experimentation stack: specs, assignment, aggregation, statistics, reports.

Serving imports only ``experiments.assignment`` and the spec types; the aggregation
worker lives in ``experiments.aggregation.aggregator``, the statistics in ``experiments.stats``.
"""

from experiments.assignment import assign, assign_all, check_layers, in_holdout
from experiments.errors import InvalidSpec, SpecConflict, StoreError
from experiments.spec import (
    ExperimentSpec,
    Layer,
    Measure,
    Metric,
    Variant,
    load_spec,
    parse_spec,
    spec_from_json,
    spec_to_json,
)

__all__ = [
    "ExperimentSpec",
    "InvalidSpec",
    "Layer",
    "Measure",
    "Metric",
    "SpecConflict",
    "StoreError",
    "Variant",
    "assign",
    "assign_all",
    "check_layers",
    "in_holdout",
    "load_spec",
    "parse_spec",
    "spec_from_json",
    "spec_to_json",
]
