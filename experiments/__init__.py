"""The experimentation stack: specs, assignment, aggregation, statistics, reports.

Serving imports only ``experiments.assignment``, the spec and surface types and the spec
checks of ``experiments.admission``; the aggregation
worker lives in ``experiments.aggregation.aggregator``, the statistics in ``experiments.stats``,
the owner's report in ``experiments.report``, off-policy evaluation in ``experiments.ope``.
``synthetic_log`` (``experiments.synthetic``, imported on first use) is a synthetic
exposure-and-outcome log for tests and benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.admission import admit, check_against_surfaces
from experiments.assignment import (
    Composition,
    assign,
    assign_all,
    check_holdouts,
    check_layers,
    check_parameters,
    compose,
    in_holdout,
    layer_bucket,
    unit_hash,
)
from experiments.errors import FencedWrite, InvalidSpec, SpecConflict, StoreError
from experiments.spec import (
    DEFAULT_SURFACE,
    DEMO_SPEC_PATH,
    DEMO_SPEC_PATHS,
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
from experiments.surfaces import RANKER, Parameter, PolicyChoice, Surface, load_surfaces, parse_surfaces
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.synthetic import SyntheticLog, synthetic_log

__all__ = [
    "DEFAULT_SURFACE",
    "FencedWrite",
    "DEMO_SPEC_PATH",
    "DEMO_SPEC_PATHS",
    "RANKER",
    "Composition",
    "Parameter",
    "PolicyChoice",
    "Surface",
    "admit",
    "check_against_surfaces",
    "check_holdouts",
    "check_parameters",
    "compose",
    "load_surfaces",
    "parse_surfaces",
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
