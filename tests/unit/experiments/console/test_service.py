"""The console's operations on an in-memory state: reads, lifecycle writes, lift over time, automatic stop."""

from __future__ import annotations

import pytest

from experiments.console.pages import detail_page
from experiments.errors import InvalidSpec, TransitionRefused, UnknownExperiment
from experiments.lifecycle import add_batch_metric
from experiments.spec import Metric
from tests.helpers import T0_MS
from tests.unit.experiments.console.builders import console_with, feed, spec_body
from tests.unit.experiments.monitor.builders import guarded_spec


def test_the_list_and_the_detail_show_status_statistics_health_and_history() -> None:
    console, _ = console_with(days=5)
    (row,) = console.list_experiments()
    assert (row["id"], row["status"], row["version"], row["srm"]["status"]) == ("guarded", "running", 1, "ok")
    detail = console.detail("guarded")
    assert {m["name"] for m in detail["statistics"]["metrics"]} == {"plays_7d", "retention_d7"}
    assert {c["name"] for c in detail["health"]} >= {"srm", "guardrails", "late_records"}
    assert detail["history"][0]["who"] == "ana" and detail["decision"] is None
    assert "history" not in detail["spec"]


def test_a_batch_only_metric_changes_no_statistic_no_check_and_is_listed_on_the_page() -> None:
    console, writer = console_with(days=5)
    before = console.detail("guarded")
    metric = Metric.model_validate({"name": "likes_7d", "role": "success", "kind": "mean", "direction": "increase",
                                    "measure": "likes", "window": {"length": "7d"}, "source": "batch"})
    writer.publish_spec(add_batch_metric(console.state.spec("guarded"), metric, who="bo", at=T0_MS + 1))
    after = console.detail("guarded")
    assert after["version"] == 2 and after["spec"]["metrics"][-1]["source"] == "batch"
    assert after["statistics"] == before["statistics"] and after["health"] == before["health"]
    assert after["lift_over_time"] == before["lift_over_time"]
    assert console.check("guarded") is None  # the monitor does not wait for the batch metric's records
    page = detail_page(after)
    assert "<p id=batch-metrics" in page and "likes_7d" in page and "tandem report guarded" in page
    assert "batch-metrics" not in detail_page(before)


def test_lift_over_time_has_one_cumulative_point_per_day_with_its_interval() -> None:
    console, _ = console_with(days=5)
    series = {(s["metric"], s["variant"]): s["points"] for s in console.detail("guarded")["lift_over_time"]}
    points = series[("retention_d7", "treatment")]
    assert [p["day"] for p in points] == [1, 2, 3, 4, 5]
    widths = [p["ci_high"] - p["ci_low"] for p in points]
    assert all(p["ci_low"] <= p["estimate"] <= p["ci_high"] for p in points)
    assert widths == sorted(widths, reverse=True)  # more users every day: the interval narrows


def test_stop_then_decide_writes_the_spec_versions_and_one_decision_record() -> None:
    console, writer = console_with(days=3)
    console.stop("guarded", who="bo", why="enough")
    record = console.decide("guarded", who="bo", note="no effect worth shipping")
    assert [s.status for s in writer.specs] == ["running", "stopped", "decided"]
    assert record.spec_version == 3 and not record.forced and record.statistics is not None
    assert record.statistics["experiment"] == "guarded" and {c["name"] for c in record.health} >= {"srm"}
    detail = console.detail("guarded")
    assert detail["status"] == "decided" and detail["decision"]["decision_id"] == record.decision_id
    assert [t["why"] for t in detail["history"]] == ["created", "enough", "no effect worth shipping"]


def test_refusals_change_nothing() -> None:
    console, writer = console_with(days=2)
    with pytest.raises(TransitionRefused, match="running; stop it first or decide with force"):
        console.decide("guarded", who="bo", note="")
    other = spec_body(variants=[{"name": "control", "weight": 0.5, "policy": "popularity"},
                                {"name": "treatment", "weight": 0.5, "policy": "softmax"}])
    with pytest.raises(TransitionRefused, match="variants"):
        console.apply(other, who="bo")
    with pytest.raises(UnknownExperiment):
        console.stop("nope", who="bo", why="")
    with pytest.raises(InvalidSpec, match="metrics"):
        console.apply(spec_body(metrics=[]), who="bo")
    assert len(writer.specs) == 1 and writer.decisions == []


def test_forced_decision_of_a_running_experiment_is_marked_forced() -> None:
    console, _ = console_with(days=2)
    assert console.decide("guarded", who="bo", note="urgent", force=True).forced


def test_the_automatic_stop_stops_a_harmful_experiment_once_with_its_reason() -> None:
    console, writer = console_with(days=1, retention={"control": 0.6, "treatment": 0.6})
    assert console.check("guarded") is None
    feed(console, guarded_spec(), days=6, retention={"control": 0.6, "treatment": 0.3}, seed=2)
    reason = console.check("guarded")
    assert reason is not None and "retention_d7 is significantly worse in treatment" in reason
    assert console.check("guarded") is None  # already stopped
    assert [(s.status, s.history[-1].who) for s in writer.specs][-1] == ("stopped", "monitor")
