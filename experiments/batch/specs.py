"""Ad-hoc metrics: a metric defined after the start, published as a new version of the spec.

``tandem experiments add-metric EXPERIMENT FILE`` validates the metric (against the spec and
the SQL compiler: errors name the field), marks it ``source: batch`` and publishes the next
version of the spec on the ``experiments`` topic through the lifecycle (who, when, why). The
aggregator, serving and the console read that version and leave the metric to the batch path;
``tandem report`` and ``tandem experiments recompute`` compute it from the archive for everyone
exposed so far. :func:`added_versions` says which version added each batch metric, from the
versions still on the topic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from experiments.batch.compiler import compile_experiment
from experiments.batch.errors import BatchError, CompileError
from experiments.errors import InvalidSpec, UnknownExperiment
from experiments.spec import ExperimentSpec, Metric, parse_spec


@dataclass(frozen=True)
class SpecVersion:
    """The version of an experiment's spec that added one batch metric."""

    experiment: str
    version: int
    metric: str
    added_at_ms: int  # the lifecycle's transition time (wall clock): metadata, never a window bound
    spec: ExperimentSpec


def read_spec(settings: Any, experiment: str) -> ExperimentSpec:
    """The experiment's newest valid version on the ``experiments`` topic."""
    from experiments.lifecycle import read_spec as newest

    try:
        return newest(settings, experiment)
    except UnknownExperiment as exc:
        raise BatchError(f"experiment: {exc}") from None


def added_versions(versions: Sequence[ExperimentSpec]) -> dict[str, SpecVersion]:
    """For each batch metric of the newest version, the oldest version that has it (``versions`` in
    topic order, as :func:`experiments.lifecycle.read_versions` returns them)."""
    from experiments.lifecycle import newest_versions, version

    if not versions:
        return {}
    newest = newest_versions(versions)[versions[-1].id]
    out: dict[str, SpecVersion] = {}
    for metric in newest.batch_metrics:
        first = min((v for v in versions if v.metric(metric.name) is not None), key=version, default=newest)
        at = first.history[-1].at if first.history else 0
        out[metric.name] = SpecVersion(newest.id, version(first), metric.name, at, first)
    return out


def parse_metric(data: Any, base: ExperimentSpec, *, where: str) -> tuple[ExperimentSpec, Metric]:
    """Validate a metric definition against the experiment and the compiler; errors name the field.

    The metric is computed in batch (``source: batch``, the default here; ``stream`` is refused by
    the lifecycle).
    """
    if not isinstance(data, dict):
        raise InvalidSpec(f"{where}: expected a mapping (a metric definition), got {type(data).__name__}")
    payload = json.loads(base.model_dump_json(exclude_none=True))
    index = len(payload["metrics"])
    payload["metrics"].append({"source": "batch", **data})
    try:
        spec = parse_spec(payload)
    except InvalidSpec as exc:
        message = str(exc).removeprefix("experiment spec: ").replace(f"metrics[{index}].", "")
        if f"metrics[{index}]" in message or "duplicate metric" in message:
            message = message.replace(f"metrics[{index}]", "name")
        raise InvalidSpec(f"{where}: {message}") from None
    metric = spec.metrics[index]
    try:
        compile_experiment(spec, closed_upto=0, metrics=[metric.name])
    except CompileError as exc:
        raise CompileError(f"{where}: {str(exc).replace(f'metrics[{index}].', '')}") from None
    return spec, metric


def load_metric(path: str | Path, base: ExperimentSpec) -> Metric:
    """The metric defined in the YAML (or JSON) file ``path``, validated against ``base``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path}: not valid YAML ({exc})") from None
    _, metric = parse_metric(data, base, where=str(path))
    return metric


def add_metric(settings: Any, experiment: str, path: str | Path, *, who: str) -> SpecVersion:
    """Publish the next version of ``experiment``'s spec with the metric of ``path`` (computed in batch)."""
    from experiments.lifecycle import add_batch_metric, publish_spec, version

    current = read_spec(settings, experiment)
    metric = load_metric(path, current)
    try:
        spec = add_batch_metric(current, metric, who=who, at=int(time.time() * 1000))
    except InvalidSpec as exc:
        raise InvalidSpec(f"{path}: {exc}") from None
    publish_spec(settings, spec)
    return SpecVersion(spec.id, version(spec), metric.name, spec.history[-1].at, spec)
