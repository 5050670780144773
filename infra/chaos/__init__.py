"""The chaos harness (``tandem chaos``, ``make chaos``): faults, hostile input and fuzzing on the
embedded stack, each scenario checked against an oracle computed from the topics after the run.

``infra.chaos.runner`` holds the registry of scenarios and writes ``bench/chaos.json``; each
scenario is a module here with ``run(work_dir, seed, quick) -> dict`` (docs/chaos.md). An entry
point on the top floor, beside the demo: every name is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from infra.chaos.runner import SCENARIOS, Scenario, UnknownScenario, run_scenarios
    from infra.chaos.stack import ChaosStack, chaos_stack

__all__ = ["SCENARIOS", "ChaosStack", "Scenario", "UnknownScenario", "chaos_stack", "run_scenarios"]

_LAZY = {
    **dict.fromkeys(("SCENARIOS", "Scenario", "UnknownScenario", "run_scenarios"), "infra.chaos.runner"),
    **dict.fromkeys(("ChaosStack", "chaos_stack"), "infra.chaos.stack"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
