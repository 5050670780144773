"""The chaos harness's registry and its report, ``bench/chaos.json``.

Every scenario is a module of ``infra.chaos`` with
``run(work_dir: Path, seed: int, quick: bool) -> dict`` returning
``{"scenario": name, "done": one sentence, "figures": {...}, "ok": bool}`` in plain JSON values.
A scenario starts what it needs in ``work_dir`` and stops it again. The runner gives each one a
directory of its own, turns an exception into ``ok: false`` with the error (the other scenarios
still run), and writes one object per scenario.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra.errors import TandemError

logger = logging.getLogger(__name__)

Scenario = Callable[[Path, int, bool], dict[str, Any]]

REPORT_PATH = Path("bench/chaos.json")


def _lazy(module: str) -> Scenario:
    """A scenario imported when it runs: ``tandem chaos --scenario security`` needs no simulator."""

    def run(work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
        scenario: Scenario = importlib.import_module(f"infra.chaos.{module}").run
        return scenario(work_dir, seed, quick)

    run.__name__ = module
    return run


#: Name -> scenario, in the order ``make chaos`` runs them (issue 20's numbering).
SCENARIOS: dict[str, Scenario] = {  # in the order (docs/chaos.md)
    "crashes": _lazy("crashes"),
    "broker_outage": _lazy("broker_outage"),
    "hostile_input": _lazy("hostile_input"),
    "http_fuzz": _lazy("http_fuzz"),
    "blast_radius": _lazy("blast_radius"),
    "security": _lazy("security"),
}

REQUIRED_KEYS = ("scenario", "done", "figures", "ok")


class UnknownScenario(TandemError, ValueError):
    """``--scenario`` names no registered scenario."""


def check_result(name: str, result: object) -> dict[str, Any]:
    """A scenario's result as the interface says, JSON-able; raise ValueError naming what is wrong."""
    if not isinstance(result, dict):
        raise ValueError(f"{name}: returned {type(result).__name__}, not a dict")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"{name}: result lacks {', '.join(missing)}")
    if not isinstance(result["ok"], bool) or not isinstance(result["figures"], dict):
        raise ValueError(f"{name}: ok must be a bool and figures a dict")
    json.dumps(result, allow_nan=False)  # raises on what a JSON reader could not take back
    return result


def run_one(name: str, scenario: Scenario, *, work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Run one scenario; a failure becomes ``ok: false`` with the error, never a lost report."""
    began = time.monotonic()
    try:
        result = check_result(name, scenario(work_dir / name, seed, quick))
    except Exception as exc:  # noqa: BLE001 - the report must say what failed and the others must run
        logger.exception("chaos scenario %s failed", name)
        result = {"scenario": name, "done": "the scenario raised before it finished", "ok": False,
                  "figures": {"error": f"{type(exc).__name__}: {exc}",
                              "where": traceback.format_exc(limit=3).splitlines()[-3:]}}
    result["wall_s"] = round(time.monotonic() - began, 1)
    return result


def run_scenarios(names: Sequence[str] | None = None, *, work_dir: Path, seed: int = 20, quick: bool = False,
                  report_path: Path | None = REPORT_PATH,
                  registry: dict[str, Scenario] | None = None) -> dict[str, Any]:
    """Run ``names`` (default: every scenario) in registry order and write the report."""
    registry = SCENARIOS if registry is None else registry
    chosen = list(registry) if not names else list(names)
    unknown = [name for name in chosen if name not in registry]
    if unknown:
        raise UnknownScenario(f"--scenario: {', '.join(unknown)} unknown; known: {', '.join(registry)}")
    began = time.monotonic()
    previous = _previous(report_path) if report_path is not None and names else []
    kept = [s for s in previous if s.get("scenario") not in chosen]  # a partial run keeps the others' last results
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    for name in chosen:
        results.append(run_one(name, registry[name], work_dir=work_dir, seed=seed, quick=quick))
        scenarios = kept + results
        report = {"seed": seed, "quick": quick, "wall_s": round(time.monotonic() - began, 1),
                  "complete": len(results) == len(chosen), "ok": all(s.get("ok") is True for s in scenarios),
                  "scenarios": scenarios}
        if report_path is not None:  # after each scenario: an interrupted run keeps what it measured
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def _previous(path: Path) -> list[dict[str, Any]]:
    try:
        scenarios = json.loads(path.read_text()).get("scenarios", [])
    except (FileNotFoundError, ValueError, AttributeError):
        return []
    return [s for s in scenarios if isinstance(s, dict)]
