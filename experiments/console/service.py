"""The console's operations as plain functions of a ``ConsoleState`` and a ``Writer``.

Reads build the JSON the API answers and the pages show; writes run a lifecycle step
(``experiments.lifecycle``), publish the new spec version (or decision record) and wait for
the broker's acknowledgement before the state and the caller see it. One lock orders the
writes, so the console and its automatic stop never publish two versions with one number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from experiments.console.state import ConsoleState
from experiments.errors import InvalidSpec
from experiments.lifecycle import DecisionRecord, apply_spec, decision_record, transition, version
from experiments.monitor import HealthCheck, as_of, evaluate
from experiments.ope.gate import carry_evaluation
from experiments.report.owner import report_spec
from experiments.report.render import build_report
from experiments.spec import ExperimentSpec, parse_spec
from experiments.stats import StatsError

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: At most this many days are drawn in the lift over time (the newest kept).
MAX_DAYS = 180
MONITOR = "monitor"


class Writer(Protocol):
    def publish_spec(self, spec: ExperimentSpec) -> None: ...
    def publish_decision(self, record: DecisionRecord) -> None: ...


@dataclass(frozen=True)
class LiftPoint:
    day: int  # days since the experiment's start (end of that day, event time)
    watermark_ts: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None


def now_ms() -> int:
    return int(time.time() * 1000)


class Console:
    """Reads and lifecycle writes over the followed topics."""

    def __init__(self, *, state: ConsoleState, writer: Writer, clock: Callable[[], int] = now_ms) -> None:
        self.state = state
        self.writer = writer
        self.clock = clock
        self._write_lock = threading.Lock()
        self._lift_cache: dict[str, tuple[int, dict[str, dict[str, list[LiftPoint]]]]] = {}
        self.automatic_stops: list[tuple[str, str]] = []

    # -- reads ---------------------------------------------------------------------------

    def list_experiments(self) -> list[dict[str, Any]]:
        out = []
        for spec in self.state.specs():
            checks = evaluate(spec, self.state.records(spec.id)).checks
            decisions = self.state.decisions(spec.id)
            out.append({
                "id": spec.id, "status": spec.status, "version": version(spec), "description": spec.description,
                "variants": [v.name for v in spec.variants],
                "srm": _check(checks, "srm"),
                "health": _worst(checks),
                "verdict": decisions[-1].verdict if decisions else None,
            })
        return out

    def detail(self, experiment: str) -> dict[str, Any]:
        spec = self.state.spec(experiment)
        records = self.state.records(experiment)
        decisions = self.state.decisions(experiment)
        return {
            "id": spec.id, "status": spec.status, "version": version(spec),
            "spec": spec.model_dump(mode="json", exclude_none=True, exclude={"history"}),
            "history": [t.model_dump(mode="json") for t in spec.history],
            "statistics": self.statistics(spec, records),
            "health": [c.to_dict() for c in evaluate(spec, records).checks],
            "lift_over_time": [
                {"metric": metric, "variant": variant, "points": [p.__dict__ for p in points]}
                for metric, by_variant in self.lift_over_time(spec).items() for variant, points in by_variant.items()
            ],
            "decision": decisions[-1].to_dict() if decisions else None,
            "decisions": [d.to_dict() for d in decisions],
        }

    @staticmethod
    def statistics(spec: ExperimentSpec, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The owner's report (``tandem report``'s numbers) on the newest records; None before any."""
        if not records:
            return None
        try:
            return build_report(spec=report_spec(spec), records=records).to_dict()
        except StatsError as exc:
            return {"error": str(exc)}

    def lift_over_time(self, spec: ExperimentSpec) -> dict[str, dict[str, list[LiftPoint]]]:
        """Per metric and treatment: the cumulative relative lift and its interval at the end of each day
        since the start, from the metric records as they stood then (the stream's daily snapshots)."""
        versions = self.state.versions(spec.id)
        cached = self._lift_cache.get(spec.id)
        if cached is not None and cached[0] == len(versions):
            return cached[1]
        days = sorted({max(1, -(-(int(r["watermark_ts"]) - spec.start) // DAY_MS)) for _, r in versions})[-MAX_DAYS:]
        out: dict[str, dict[str, list[LiftPoint]]] = {}
        plan = report_spec(spec)
        for day in days:
            cutoff = spec.start + day * DAY_MS
            records = as_of(versions, cutoff)
            if not records or any(int(r["n"]) < 2 for r in records):
                continue
            try:
                analysis = build_report(spec=plan, records=records).analysis
            except StatsError:
                continue
            for metric in analysis.metrics:
                for c in metric.comparisons:
                    out.setdefault(metric.name, {}).setdefault(c.variant, []).append(LiftPoint(
                        day=day, watermark_ts=cutoff, estimate=c.relative.estimate, ci_low=c.relative.ci_low,
                        ci_high=c.relative.ci_high))
        self._lift_cache[spec.id] = (len(versions), out)
        return out

    # -- writes --------------------------------------------------------------------------

    def apply(self, data: Mapping[str, Any], *, who: str, why: str = "", no_gate: bool = False) -> ExperimentSpec:
        """Validate and apply a spec (``InvalidSpec`` names the field; ``TransitionRefused`` says why not;
        ``GateRefused`` when a variant serves another policy without the evaluation gate's record)."""
        proposed = parse_spec(dict(data))
        with self._write_lock:
            current = self.state.specs_by_id().get(proposed.id)
            at = self.clock()
            following = apply_spec(current, proposed, who=who, at=at, why=why)
            return self._publish(carry_evaluation(current, following, no_gate=no_gate, who=who, at=at))

    def stop(self, experiment: str, *, who: str, why: str) -> ExperimentSpec:
        with self._write_lock:
            current = self.state.spec(experiment)
            return self._publish(transition(current, to="stopped", who=who, at=self.clock(), why=why))

    def decide(self, experiment: str, *, who: str, note: str, force: bool = False) -> DecisionRecord:
        """Decide: the spec's ``decided`` version, then the decision record with the statistics and checks."""
        with self._write_lock:
            current = self.state.spec(experiment)
            at = self.clock()
            decided = transition(current, to="decided", who=who, at=at, why=note, force=force)
            records = self.state.records(experiment)
            record = decision_record(
                decided, who=who, at=at, note=note, forced=force and current.status == "running",
                statistics=self.statistics(decided, records),
                health=[c.to_dict() for c in evaluate(decided, records).checks],
            )
            # The record first: a decided spec always has its record, even after a crash in between.
            self.writer.publish_decision(record)
            self.state.put_decision(record)
            self._publish(decided)
            return record

    def check(self, experiment: str) -> str | None:
        """The automatic stop: evaluate a running experiment; stop it if a check failed. Returns the reason."""
        try:
            spec = self.state.spec(experiment)
        except LookupError:
            return None
        if spec.status != "running":
            return None
        verdict = evaluate(spec, self.state.records(experiment))
        if not verdict.stop:
            return None
        with self._write_lock:
            current = self.state.spec(experiment)
            if current.status != "running":  # stopped meanwhile
                return None
            self._publish(transition(current, to="stopped", who=MONITOR, at=self.clock(), why=verdict.reason))
        self.automatic_stops.append((experiment, verdict.reason))
        logger.warning("experiment %s stopped: %s", experiment, verdict.reason)
        return verdict.reason

    def _publish(self, spec: ExperimentSpec) -> ExperimentSpec:
        self.writer.publish_spec(spec)
        self.state.put_spec(spec)
        return spec


def _check(checks: tuple[HealthCheck, ...], name: str) -> dict[str, Any]:
    found = next(c for c in checks if c.name == name)
    return {"status": found.status, "detail": found.detail}


def _worst(checks: tuple[HealthCheck, ...]) -> str:
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


def spec_errors(error: InvalidSpec) -> list[dict[str, str]]:
    """``[{"field": path, "message": ...}]`` from a spec validation error's message."""
    text = str(error).split("experiment spec: ", 1)[-1]
    out = []
    for part in text.split("; "):
        field, sep, message = part.partition(": ")
        out.append({"field": field, "message": message} if sep else {"field": "", "message": part})
    return out
