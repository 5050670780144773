"""The experimentation stack: specs, assignment, aggregation, statistics, reports.

Serving imports only ``experiments.assignment`` and the spec types; the aggregation
worker lives in ``experiments.aggregation.aggregator``, the statistics in ``experiments.stats``,
the owner's report in ``experiments.report``, off-policy evaluation in ``experiments.ope``.
``synthetic_log`` (``experiments.synthetic``, imported on first use) is a synthetic
exposure-and-outcome log for tests and benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.assignment import assign, assign_all, check_layers, in_holdout, layer_bucket, unit_hash
from experiments.errors import FencedWrite, InvalidSpec, SpecConflict, StoreError
from experiments.spec import (
    DEMO_SPEC_PATH,
    LAYER_BUCKETS,
    SPECS_DIR,
    Covariate,
    ExperimentSpec,
    Layer,
    Measure,
    Metric,
    Variant,
    Window,
    load_spec,
    parse_duration,
    parse_instant,
    parse_spec,
    spec_from_json,
    spec_to_json,
)
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.synthetic import SyntheticLog, synthetic_log

__all__ = [
    "FencedWrite",
    "DEMO_SPEC_PATH",
    "LAYER_BUCKETS",
    "SPECS_DIR",
    "Covariate",
    "ExperimentSpec",
    "InvalidSpec",
    "Layer",
    "Measure",
    "Metric",
    "SpecConflict",
    "StoreError",
    "SyntheticLog",
    "Variant",
    "Window",
    "assign",
    "assign_all",
    "check_layers",
    "in_holdout",
    "layer_bucket",
    "load_spec",
    "parse_duration",
    "parse_instant",
    "parse_spec",
    "spec_from_json",
    "spec_to_json",
    "synthetic_log",
    "unit_hash",
]

#: Exports imported on first use, and their modules.
_LAZY = dict.fromkeys(("SyntheticLog", "synthetic_log"), "experiments.synthetic")


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
