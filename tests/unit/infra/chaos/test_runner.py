"""The chaos runner: registry order, the report it writes, and failures turned into ok: false."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from infra.chaos.runner import SCENARIOS, UnknownScenario, check_result, run_scenarios


def passing(work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    return {"scenario": "passing", "done": f"ran in {work_dir.name} with seed {seed}", "ok": True,
            "figures": {"seed": seed, "quick": quick}}


def failing(work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    raise RuntimeError("the broker would not start")


def not_json(work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    return {"scenario": "not_json", "done": "x", "ok": True, "figures": {"p99": math.nan}}


def test_the_registry_runs_the_issue_scenarios_in_order() -> None:
    assert list(SCENARIOS) == [
        "crashes", "broker_outage", "hostile_input", "http_fuzz", "blast_radius", "security"]


def test_a_failing_scenario_is_reported_not_ok_and_the_others_still_run(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    report = run_scenarios(work_dir=tmp_path / "work", seed=3, quick=True, report_path=out,
                           registry={"failing": failing, "passing": passing, "not_json": not_json})
    written = json.loads(out.read_text())
    assert written == report
    by_name = {s["scenario"]: s for s in written["scenarios"]}
    assert [s["scenario"] for s in written["scenarios"]] == ["failing", "passing", "not_json"]
    assert by_name["failing"]["ok"] is False
    assert "RuntimeError: the broker would not start" in by_name["failing"]["figures"]["error"]
    assert by_name["passing"]["ok"] is True and by_name["passing"]["figures"] == {"seed": 3, "quick": True}
    assert by_name["passing"]["done"] == "ran in passing with seed 3"
    assert by_name["not_json"]["ok"] is False  # NaN is no JSON value: the figures would not read back
    assert written["ok"] is False and written["seed"] == 3 and written["quick"] is True


def test_a_partial_run_keeps_the_other_scenarios_last_results(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    registry = {"failing": failing, "passing": passing}
    run_scenarios(work_dir=tmp_path, report_path=out, registry=registry)
    run_scenarios(["passing"], work_dir=tmp_path, report_path=out, registry=registry)
    written = json.loads(out.read_text())
    assert [(s["scenario"], s["ok"]) for s in written["scenarios"]] == [("failing", False), ("passing", True)]
    assert written["ok"] is False


def test_an_unknown_scenario_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownScenario, match="--scenario: nope unknown; known: passing"):
        run_scenarios(["nope"], work_dir=tmp_path, report_path=None, registry={"passing": passing})


@pytest.mark.parametrize(("result", "message"), [
    ([], "returned list, not a dict"),
    ({"scenario": "x", "ok": True}, "lacks done, figures"),
    ({"scenario": "x", "done": "d", "figures": [], "ok": True}, "ok must be a bool and figures a dict"),
    ({"scenario": "x", "done": "d", "figures": {}, "ok": "yes"}, "ok must be a bool and figures a dict"),
])
def test_results_that_break_the_interface_are_refused(result: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_result("x", result)


def test_the_report_is_written_after_each_scenario(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    seen: list[dict[str, Any]] = []

    def reads_the_report(work_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
        seen.append(json.loads(out.read_text()))
        return {"scenario": "second", "done": "read the report", "ok": True, "figures": {}}

    report = run_scenarios(work_dir=tmp_path, report_path=out,
                           registry={"failing": failing, "second": reads_the_report})
    assert [s["scenario"] for s in seen[0]["scenarios"]] == ["failing"] and seen[0]["complete"] is False
    assert report["complete"] is True and json.loads(out.read_text()) == report
