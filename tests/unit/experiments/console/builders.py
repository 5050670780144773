"""A console over an in-memory writer: what it publishes goes straight into its state."""

from __future__ import annotations

import json
from typing import Any

from experiments.console import Console, ConsoleState
from experiments.lifecycle import DecisionRecord, apply_spec
from experiments.spec import ExperimentSpec, spec_to_json
from tests.helpers import T0_MS
from tests.unit.experiments.monitor.builders import guarded_spec, looks


class InMemoryWriter:
    def __init__(self, state: ConsoleState) -> None:
        self.state = state
        self.specs: list[ExperimentSpec] = []
        self.decisions: list[DecisionRecord] = []

    def publish_spec(self, spec: ExperimentSpec) -> None:
        self.specs.append(spec)
        self.state.apply_spec(spec.id.encode(), spec_to_json(spec))

    def publish_decision(self, record: DecisionRecord) -> None:
        self.decisions.append(record)
        self.state.apply_decision(record.experiment.encode(), record.to_json())


def console_with(*, days: int = 5, retention: dict[str, float] | None = None,
                 spec: ExperimentSpec | None = None) -> tuple[Console, InMemoryWriter]:
    """A console that knows one running experiment and ``days`` days of its metric records."""
    state = ConsoleState()
    writer = InMemoryWriter(state)
    console = Console(state=state, writer=writer, clock=lambda: T0_MS + 99)
    spec = spec or guarded_spec()
    writer.publish_spec(apply_spec(None, spec, who="ana", at=T0_MS))
    feed(console, spec, days=days, retention=retention or {"control": 0.5, "treatment": 0.5})
    return console, writer


def feed(console: Console, spec: ExperimentSpec, *, days: int, retention: dict[str, float], seed: int = 1) -> None:
    for published in looks(spec, seed=seed, retention=retention, users_per_look=100, count=days):
        for key, record in published:
            console.state.apply_metric(key.encode(), json.dumps(record).encode())


def spec_body(**changes: Any) -> dict[str, Any]:
    data = json.loads(spec_to_json(guarded_spec()))
    data.update(changes)
    return data
