"""Scenario 2 (``infra.chaos.broker_outage``), short and seeded: nothing here asserts a latency."""

from __future__ import annotations

from pathlib import Path

from infra.chaos.broker_outage import run


def test_a_short_outage_is_buffered_delivered_and_the_old_logs_state_refused(tmp_path: Path) -> None:
    result = run(tmp_path, seed=3, quick=True)
    figures = result["figures"]
    assert isinstance(figures, dict)
    assert figures["during_outage"]["errors"] == 0 and figures["baseline"]["errors"] == 0
    assert figures["overflowed"] > 0 and figures["overflowed_on_metrics"] == figures["overflowed"]
    assert figures["delivered_after_return"] == figures["buffered_during_outage"] == figures["records_on_new_log"]
    assert figures["failed_deliveries"] == 0
    assert figures["aggregator_after_return_exit"] == 2 and "was built from broker log" in figures["aggregator_refusal"]
    assert result["ok"] is True and result["scenario"] == "broker_outage"
