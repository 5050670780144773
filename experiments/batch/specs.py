"""Experiment specs for the batch path: the stream's, and the versions that add ad-hoc metrics.

The running spec is the newest on the compacted ``experiments`` topic (version 1 here). A
metric defined after the start (``tandem experiments add-metric``) makes a new version, kept
with the archive it is computed from (``<archive>/_specs/<experiment>/v0002.json``, …): the
aggregator never sees it (it refuses metric changes of a running experiment), the batch path
computes it over everyone exposed so far. Each version records when it was added (wall clock,
metadata only) and the metric it added.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from experiments.batch.archive import Archive
from experiments.batch.compiler import compile_experiment
from experiments.batch.errors import BatchError, CompileError
from experiments.errors import InvalidSpec
from experiments.spec import ExperimentSpec, Metric, parse_spec, spec_from_json

_VERSION = re.compile(r"^v(\d{4,})\.json$")


@dataclass(frozen=True)
class SpecVersion:
    """A version of an experiment's spec that added one metric."""

    experiment: str
    version: int
    metric: str
    added_at_ms: int  # wall clock when it was added: metadata, never a window bound
    spec: ExperimentSpec


def read_spec(settings: Any, experiment: str) -> ExperimentSpec:
    """The experiment's newest spec on the ``experiments`` topic."""
    from infra.kafka.topic_reader import newest_per_key, read_topic
    from infra.kafka.topics import EXPERIMENTS

    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENTS)))
    record = newest.get(experiment.encode())
    if record is None or record.value is None:
        raise BatchError(f"experiment: {experiment!r} is not on the experiments topic")
    return spec_from_json(record.value)


def _directory(archive: Archive, experiment: str) -> str:
    return f"{archive.root}/_specs/{experiment}"


def versions(archive: Archive, experiment: str) -> list[SpecVersion]:
    """The ad-hoc versions of an experiment, oldest first."""
    selector = pafs.FileSelector(_directory(archive, experiment), allow_not_found=True)
    out = []
    for info in archive.filesystem.get_file_info(selector):
        match = _VERSION.match(info.base_name)
        if match is None:
            continue
        with archive.filesystem.open_input_stream(info.path) as source:
            try:
                data = json.loads(source.read())
                out.append(SpecVersion(experiment, int(data["version"]), str(data["metric"]),
                                       int(data["added_at_ms"]), parse_spec(data["spec"])))
            except (ValueError, KeyError, InvalidSpec) as exc:
                raise BatchError(f"{info.path}: not a spec version ({exc})") from None
    return sorted(out, key=lambda v: v.version)


def effective_spec(base: ExperimentSpec, archive: Archive) -> tuple[ExperimentSpec, dict[str, SpecVersion]]:
    """The stream's spec plus every metric added since, and the version that added each."""
    added = {v.metric: v for v in versions(archive, base.id)}
    metrics = list(base.metrics) + [
        v.spec.metric(name) for name, v in added.items() if base.metric(name) is None  # type: ignore[misc]
    ]
    return base.model_copy(update={"metrics": tuple(metrics)}), added


def parse_metric(data: Any, base: ExperimentSpec, *, where: str) -> tuple[ExperimentSpec, Metric]:
    """Validate a metric definition against the experiment and the compiler; errors name the field."""
    if not isinstance(data, dict):
        raise InvalidSpec(f"{where}: expected a mapping (a metric definition), got {type(data).__name__}")
    payload = json.loads(base.model_dump_json(exclude_none=True))
    index = len(payload["metrics"])
    payload["metrics"].append(data)
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


def add_metric(archive: Archive, base: ExperimentSpec, path: str | Path) -> SpecVersion:
    """Add the metric defined in the YAML (or JSON) file ``path`` as a new version of the spec."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path}: not valid YAML ({exc})") from None
    current, _ = effective_spec(base, archive)
    spec, metric = parse_metric(data, current, where=str(path))
    version = max([v.version for v in versions(archive, base.id)], default=1) + 1
    record = SpecVersion(base.id, version, metric.name, int(time.time() * 1000), spec)
    directory = _directory(archive, base.id)
    archive.filesystem.create_dir(directory, recursive=True)
    body = json.dumps({
        "version": version, "metric": metric.name, "added_at_ms": record.added_at_ms,
        "spec": json.loads(spec.model_dump_json(exclude_none=True)),
    }, sort_keys=True).encode()
    with archive.filesystem.open_output_stream(f"{directory}/v{version:04d}.json") as sink:
        sink.write(body)
    return record
