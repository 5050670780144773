"""The main job (``tandem demo``, ``make demo``) and the process supervision behind it and ``tandem up | down``.

``infra.demo.run`` runs both stacks on an embedded broker against a simulated population
and prints the experiment report; ``infra.demo.supervisor`` starts each worker in a process
(and log) of its own and stops exactly the processes it started. Entry points only: every
name here is imported on first use (the demo pulls in the simulator, the report and matplotlib).
The demo itself is ``run_demo``; ``infra.demo.run`` is its module (its ``run`` returns the figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from infra.demo.run import DemoOptions, DemoResult, run_demo, start_detached, worker_specs
    from infra.demo.supervisor import ProcessSpec, Supervisor, stop_recorded, wait_for

__all__ = [
    "DemoOptions",
    "DemoResult",
    "ProcessSpec",
    "Supervisor",
    "run_demo",
    "start_detached",
    "stop_recorded",
    "wait_for",
    "worker_specs",
]

#: Exports imported on first use, and their modules.
_LAZY = {
    **dict.fromkeys(("DemoOptions", "DemoResult", "run_demo", "start_detached", "worker_specs"),
                    "infra.demo.run"),
    **dict.fromkeys(("ProcessSpec", "Supervisor", "stop_recorded", "wait_for"), "infra.demo.supervisor"),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
