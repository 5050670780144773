"""Scenario 5 (``infra.chaos.blast_radius``), short and seeded. Latency ratios are reported by the
scenario, never asserted here (a test asserts no wall-clock time); errors and the oracle are."""

from __future__ import annotations

from pathlib import Path

from infra.chaos.blast_radius import run


def test_serving_answers_through_every_fault_and_the_overloaded_run_equals_the_oracle(tmp_path: Path) -> None:
    result = run(tmp_path, seed=5, quick=True)
    figures = result["figures"]
    assert isinstance(figures, dict)
    phases = figures["forward"]["phases"]
    for phase in ("b_killed", "c_starved", "d_console_flood"):
        assert phases[phase]["errors"] == 0 and phases[phase]["completed"] == phases[phase]["requests"], phase
        assert phases[phase]["p99_ratio_to_a"] is not None
    assert figures["forward"]["console_flood"]["errors_5xx"] == 0
    assert figures["forward"]["aggregator_alive_after_duty_cycle"] is True
    reverse = figures["reverse"]
    assert reverse["aggregator_exit"] == 0 and reverse["metric_records"] > 0
    assert reverse["differences"] == [] and reverse["dead_letters"] == 0
