"""An experiment's life: ``draft`` → ``running`` → ``stopped`` → ``decided``, every step recorded.

A change of an experiment is a new version of its spec on the ``experiments`` topic: the
spec with its new ``status`` and one more :class:`~experiments.spec.Transition` (who, when,
why) in ``history``. The version number is the length of the history, so readers keep the
newest version of each experiment whatever order copies reach them in. Serving assigns and
exposes only ``running`` experiments.

Allowed moves (:data:`MOVES`); everything else raises :class:`TransitionRefused` and changes
nothing:

>>> from experiments.spec import load_spec, DEMO_SPEC_PATH
>>> spec = apply_spec(None, load_spec(DEMO_SPEC_PATH), who="ana", at=1_767_225_600_000)
>>> spec.status, version(spec)
('running', 1)
>>> transition(spec, to="decided", who="ana", at=1_767_225_600_001)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
experiments.errors.TransitionRefused: status: ... is running; stop it first or decide with force
>>> stopped = transition(spec, to="stopped", who="ana", at=1_767_225_600_001, why="guardrail")
>>> stopped.status, [t.status for t in stopped.history]
('stopped', ['running', 'stopped'])

Deciding writes a :class:`DecisionRecord` to the append-only ``experiment-decisions`` topic:
the spec version decided on, the statistics, the rule's verdict and reasons, the health
checks, who decided and their note. It is never rewritten.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from experiments.errors import InvalidSpec, TransitionRefused, UnknownExperiment
from experiments.ope.calibration import calibration_rows
from experiments.spec import ExperimentSpec, Metric, Status, Transition, spec_from_json, spec_to_json
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import EXPERIMENT_DECISIONS, EXPERIMENTS
from infra.settings import Settings

logger = logging.getLogger(__name__)

#: The statuses each status may move to.
MOVES: Mapping[Status, frozenset[Status]] = {
    "draft": frozenset({"running"}),
    "running": frozenset({"stopped", "decided"}),
    "stopped": frozenset({"running", "decided"}),
    "decided": frozenset(),
}
#: Statuses under which users were exposed: their variants can no longer change.
EXPOSED: frozenset[Status] = frozenset({"running", "stopped", "decided"})


def version(spec: ExperimentSpec) -> int:
    """The spec's version: how many recorded changes it went through (0 for a spec never applied)."""
    return len(spec.history)


def apply_spec(current: ExperimentSpec | None, proposed: ExperimentSpec, *, who: str, at: int,
               why: str = "") -> ExperimentSpec:
    """The next version when ``proposed`` is applied over ``current`` (None: a new experiment).

    A new experiment starts as ``draft`` or ``running`` (its ``status``, default running). An
    existing one keeps its status unless ``proposed`` names another that is an allowed move;
    its variants cannot change once users were exposed; a decided experiment cannot change.
    """
    if proposed.history:
        raise TransitionRefused("history: written by the lifecycle only; apply a spec without it")
    if current is None:
        if proposed.status not in ("draft", "running"):
            raise TransitionRefused(f"status: a new experiment starts as draft or running, not {proposed.status}")
        return _next(proposed, proposed.status, who=who, at=at, why=why or "created")
    if current.id != proposed.id:
        raise TransitionRefused(f"id: {proposed.id!r} is not {current.id!r}")
    if current.status == "decided":
        raise TransitionRefused(f"status: experiment {current.id!r} is decided; its spec can no longer change")
    if current.status in EXPOSED and _variants(current) != _variants(proposed):
        raise TransitionRefused(
            f"variants: experiment {current.id!r} is {current.status}; changing its variants would invalidate "
            "the data collected so far (create a new experiment instead)"
        )
    status = proposed.status if "status" in proposed.model_fields_set else current.status
    if status != current.status and status not in MOVES[current.status]:
        raise TransitionRefused(f"status: {current.status} cannot become {status}")
    base = proposed.model_copy(update={"history": current.history})
    return _next(base, status, who=who, at=at, why=why or "spec updated")


def transition(current: ExperimentSpec, *, to: Status, who: str, at: int, why: str = "",
               force: bool = False) -> ExperimentSpec:
    """The next version of ``current`` with status ``to``; deciding a running experiment needs ``force``."""
    if to == "decided" and current.status == "running" and not force:
        raise TransitionRefused(
            f"status: experiment {current.id!r} is running; stop it first or decide with force"
        )
    if to not in MOVES[current.status]:
        raise TransitionRefused(f"status: experiment {current.id!r} is {current.status}; it cannot become {to}")
    return _next(current, to, who=who, at=at, why=why)


def add_batch_metric(current: ExperimentSpec, metric: Metric, *, who: str, at: int, why: str = "") -> ExperimentSpec:
    """The next version of ``current`` with ``metric`` added, computed by the batch path only.

    The stream cannot compute a metric for users whose windows it has already closed, so a metric
    added once users were exposed is ``source: batch``: the aggregator, serving and the console
    ignore it, ``tandem report`` and ``tandem experiments recompute`` compute it from the archive
    for everyone exposed so far. A draft takes a stream metric by ``apply_spec`` instead.
    """
    if current.status not in ("running", "stopped"):
        raise TransitionRefused(
            f"status: experiment {current.id!r} is {current.status}; a metric is added in batch to a running "
            "or stopped experiment only" + (" (apply the spec with the metric instead)" if current.status == "draft"
                                            else "")
        )
    if metric.source != "batch":
        raise InvalidSpec(f"source: metric {metric.name!r} added to experiment {current.id!r} is computed in "
                          "batch only (source: batch); the stream has closed windows without it")
    if current.metric(metric.name) is not None:
        raise InvalidSpec(f"name: duplicate metric {metric.name!r}")
    added = current.model_copy(update={"metrics": (*current.metrics, metric)})
    return _next(added, current.status, who=who, at=at, why=why or f"metric {metric.name} added (source batch)")


def _next(spec: ExperimentSpec, status: Status, *, who: str, at: int, why: str) -> ExperimentSpec:
    step = Transition(status=status, who=who, at=at, why=why)
    # Validate the whole new version, so a bad ``who`` or ``at`` names its field.
    data = spec.model_dump(mode="json", exclude_none=True)
    data.update(status=status, history=[*data.get("history", ()), step.model_dump(mode="json")])
    return ExperimentSpec.model_validate(data)


def _variants(spec: ExperimentSpec) -> tuple[tuple[str, float, str], ...]:
    """What must not change once users were exposed: each variant's name, weight and parameters."""
    return tuple((v.name, v.weight, json.dumps(v.model_dump(mode="json")["params"], sort_keys=True))
                 for v in spec.variants)


def newest_versions(specs: Iterable[ExperimentSpec]) -> dict[str, ExperimentSpec]:
    """The newest version of each experiment (later copies of an equal version win)."""
    out: dict[str, ExperimentSpec] = {}
    for spec in specs:
        known = out.get(spec.id)
        if known is None or version(spec) >= version(known):
            out[spec.id] = spec
    return out


# -- decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionRecord:
    """What was decided on an experiment, on which evidence, by whom; written once, never changed."""

    decision_id: str
    experiment: str
    spec_version: int
    decided_by: str
    decided_at: int
    verdict: str  # the rule's verdict when deciding: ship | do_not_ship | inconclusive
    reasons: tuple[str, ...]
    rule: str
    note: str
    forced: bool
    health: tuple[Mapping[str, Any], ...]
    statistics: Mapping[str, Any] | None  # the report (engine analysis and counts) at the time
    #: the evaluation gate's prediction beside the realized effect, per gated variant and metric
    #: (``experiments.ope.calibration``); empty when the spec went through no gate
    calibration: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["health"] = [dict(check) for check in self.health]
        out["calibration"] = [dict(row) for row in self.calibration]
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | str) -> DecisionRecord:
        data = json.loads(raw)
        data["reasons"] = tuple(data["reasons"])
        data["health"] = tuple(data["health"])
        data["calibration"] = tuple(data.get("calibration", ()))  # records written before calibration existed
        return cls(**data)


#: The rule every decision record names: the statistics engine's (``experiments.stats.decision``).
DECISION_RULE = "experiments.stats.decision: SRM blocks; any significant harm: do_not_ship; " \
                "a success metric better and every guardrail non-inferior: ship; else inconclusive"


def decision_record(spec: ExperimentSpec, *, who: str, at: int, note: str, forced: bool,
                    statistics: Mapping[str, Any] | None, health: Iterable[Mapping[str, Any]]) -> DecisionRecord:
    """The record of deciding ``spec`` (the version that is ``decided``)."""
    decision = (statistics or {}).get("decision") or {}
    return DecisionRecord(
        decision_id=uuid.uuid4().hex, experiment=spec.id, spec_version=version(spec), decided_by=who,
        decided_at=at, verdict=str(decision.get("verdict", "inconclusive")),
        reasons=tuple(decision.get("reasons", ("no statistics yet",))), rule=DECISION_RULE, note=note,
        forced=forced, health=tuple(dict(check) for check in health), statistics=statistics,
        calibration=tuple(row.to_dict() for row in calibration_rows(spec, statistics)),
    )


# -- the topics ----------------------------------------------------------------------------


def read_specs(settings: Settings) -> dict[str, ExperimentSpec]:
    """The newest valid version of every experiment on the experiments topic (a tombstone removes one).

    Every record is read in topic order: a record that is not a valid spec (dead-lettered by serving
    and the aggregator) leaves the last good version in force, here as there.
    """
    specs: dict[str, ExperimentSpec] = {}
    for record in read_topic(settings, settings.topic(EXPERIMENTS)):
        key = (record.key or b"").decode("utf-8", errors="replace")
        if record.value is None:
            specs.pop(key, None)
            continue
        try:
            spec = spec_from_json(record.value)
        except InvalidSpec as exc:
            logger.error("experiments: record %r at offset %d is not a valid spec: %s", key, record.offset, exc)
            continue
        known = specs.get(spec.id)
        if known is None or version(spec) >= version(known):
            specs[spec.id] = spec
    return specs


def read_versions(settings: Settings, experiment: str) -> list[ExperimentSpec]:
    """Every valid version of one experiment still on the experiments topic, in topic order (since
    its last tombstone, if it was deleted and created again)."""
    out: list[ExperimentSpec] = []
    for record in read_topic(settings, settings.topic(EXPERIMENTS)):
        if record.key != experiment.encode("utf-8"):
            continue
        if record.value is None:
            out.clear()
            continue
        try:
            out.append(spec_from_json(record.value))
        except InvalidSpec:
            continue  # logged by read_specs; the last good version stays in force
    return out


def read_spec(settings: Settings, experiment: str) -> ExperimentSpec:
    spec = read_specs(settings).get(experiment)
    if spec is None:
        raise UnknownExperiment(f"experiment {experiment!r} is not on {settings.topic(EXPERIMENTS)}")
    return spec


def read_decisions(settings: Settings) -> list[DecisionRecord]:
    """Every decision record, oldest first."""
    return [
        DecisionRecord.from_json(record.value)
        for record in read_topic(settings, settings.topic(EXPERIMENT_DECISIONS))
        if record.value is not None
    ]


def publish_spec(settings: Settings, spec: ExperimentSpec) -> None:
    """Write a version of a spec to the experiments topic and wait for the broker's acknowledgement."""
    _publish(settings, settings.topic(EXPERIMENTS), spec.id, spec_to_json(spec))


def publish_decision(settings: Settings, record: DecisionRecord) -> None:
    _publish(settings, settings.topic(EXPERIMENT_DECISIONS), record.experiment, record.to_json())


def _publish(settings: Settings, topic: str, key: str, value: bytes) -> None:
    from infra.kafka.config import producer_config
    from infra.kafka.producer import KafkaPublisher

    publisher = KafkaPublisher(config=producer_config(settings), topic=topic)
    try:
        publisher.publish_bytes(key.encode("utf-8"), value)
        publisher.flush()
    finally:
        publisher.close()
