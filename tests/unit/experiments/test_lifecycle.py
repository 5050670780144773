"""The lifecycle: allowed moves only, each recorded; variants frozen once exposed; decision records."""

from __future__ import annotations

import pytest

from experiments.errors import InvalidSpec, TransitionRefused
from experiments.lifecycle import (
    MOVES,
    DecisionRecord,
    add_batch_metric,
    apply_spec,
    decision_record,
    newest_versions,
    transition,
    version,
)
from experiments.spec import ExperimentSpec, Metric, parse_spec, spec_from_json, spec_to_json
from tests.helpers import T0_MS

DAY_MS = 86_400_000


def spec(**changes: object) -> ExperimentSpec:
    data = {
        "id": "exp", "salt": "exp/1", "start": T0_MS, "end": T0_MS + 30 * DAY_MS, "control": "control",
        "variants": [{"name": "control", "weight": 0.5, "policy": "popularity"},
                     {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
        "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                     "measure": "plays", "window": {"length": "7d"}}],
    }
    data.update(changes)
    return parse_spec(data)


def running() -> ExperimentSpec:
    return apply_spec(None, spec(), who="ana", at=T0_MS)


def test_a_spec_without_status_is_running_so_existing_specs_keep_serving() -> None:
    assert spec().status == "running" and spec().history == ()


def test_a_new_experiment_gets_its_first_version_with_who_when_and_why() -> None:
    created = running()
    assert version(created) == 1 and created.status == "running"
    (step,) = created.history
    assert (step.status, step.who, step.at, step.why) == ("running", "ana", T0_MS, "created")
    assert spec_from_json(spec_to_json(created)) == created


def test_every_move_is_allowed_or_refused_as_the_table_says() -> None:
    start = {"draft": apply_spec(None, spec(status="draft"), who="a", at=T0_MS)}
    start["running"] = transition(start["draft"], to="running", who="a", at=T0_MS + 1)
    start["stopped"] = transition(start["running"], to="stopped", who="a", at=T0_MS + 2)
    start["decided"] = transition(start["stopped"], to="decided", who="a", at=T0_MS + 3)
    for status, current in start.items():
        for target in MOVES:
            if target in MOVES[status]:
                moved = transition(current, to=target, who="b", at=T0_MS + 9, why="because", force=True)
                assert moved.status == target and version(moved) == version(current) + 1
                assert moved.history[:-1] == current.history and moved.history[-1].why == "because"
            else:
                with pytest.raises(TransitionRefused, match="status"):
                    transition(current, to=target, who="b", at=T0_MS + 9, force=True)


def test_deciding_a_running_experiment_needs_force_and_says_why() -> None:
    with pytest.raises(TransitionRefused, match="is running; stop it first or decide with force"):
        transition(running(), to="decided", who="ana", at=T0_MS + 1)
    assert transition(running(), to="decided", who="ana", at=T0_MS + 1, force=True).status == "decided"


@pytest.mark.parametrize("variants", [
    [{"name": "control", "weight": 0.5, "policy": "popularity"}, {"name": "treatment", "weight": 0.5,
                                                                   "policy": "softmax"}],
    [{"name": "control", "weight": 0.4, "policy": "popularity"}, {"name": "treatment", "weight": 0.6,
                                                                   "policy": "linucb"}],
    [{"name": "control", "weight": 0.5, "policy": "popularity"}, {"name": "other", "weight": 0.5,
                                                                   "policy": "linucb"}],
])
def test_the_variants_of_a_running_experiment_cannot_change(variants: list) -> None:
    with pytest.raises(TransitionRefused, match="variants: .* would invalidate"):
        apply_spec(running(), spec(variants=variants), who="bo", at=T0_MS + 1)


def test_other_fields_of_a_running_experiment_can_change_and_keep_status_and_history() -> None:
    stopped = transition(running(), to="stopped", who="ana", at=T0_MS + 1)
    updated = apply_spec(stopped, spec(description="clearer"), who="bo", at=T0_MS + 2, why="typo")
    assert updated.status == "stopped" and updated.description == "clearer"
    assert [t.who for t in updated.history] == ["ana", "ana", "bo"]


def test_a_draft_may_change_its_variants_and_a_decided_experiment_nothing() -> None:
    draft = apply_spec(None, spec(status="draft"), who="a", at=T0_MS)
    other = [{"name": "control", "weight": 0.3, "policy": "popularity"},
             {"name": "treatment", "weight": 0.7, "policy": "linucb"}]
    assert apply_spec(draft, spec(variants=other), who="a", at=T0_MS + 1).variants[1].weight == 0.7
    decided = transition(running(), to="decided", who="a", at=T0_MS + 1, force=True)
    with pytest.raises(TransitionRefused, match="is decided"):
        apply_spec(decided, spec(description="late"), who="a", at=T0_MS + 2)


def test_history_is_written_by_the_lifecycle_only_and_new_experiments_start_as_draft_or_running() -> None:
    with pytest.raises(TransitionRefused, match="history"):
        apply_spec(running(), running(), who="a", at=T0_MS + 1)
    with pytest.raises(TransitionRefused, match="status: a new experiment"):
        apply_spec(None, spec(status="stopped"), who="a", at=T0_MS)


def test_the_newest_version_wins_whatever_the_order_copies_arrive_in() -> None:
    first = running()
    second = transition(first, to="stopped", who="a", at=T0_MS + 1)
    assert newest_versions([second, first])["exp"] == second
    assert newest_versions([first, second])["exp"] == second


def test_a_decision_record_round_trips_and_names_the_version_and_the_rule() -> None:
    decided = transition(transition(running(), to="stopped", who="a", at=T0_MS + 1), to="decided", who="b",
                         at=T0_MS + 2)
    stats = {"decision": {"verdict": "ship", "reasons": ["plays better"]}}
    record = decision_record(decided, who="b", at=T0_MS + 2, note="ship it", forced=False, statistics=stats,
                             health=[{"name": "srm", "passed": True, "detail": "p=0.5"}])
    assert record.spec_version == 3 and record.verdict == "ship" and record.reasons == ("plays better",)
    assert "experiments.stats.decision" in record.rule
    assert DecisionRecord.from_json(record.to_json()) == record


def batch_metric(name: str = "likes_7d", source: str = "batch") -> Metric:
    return Metric.model_validate({"name": name, "role": "success", "kind": "mean", "direction": "increase",
                                  "measure": "likes", "window": {"length": "7d"}, "source": source})


def test_a_batch_metric_added_to_a_running_experiment_is_a_recorded_version() -> None:
    current = running()
    added = add_batch_metric(current, batch_metric(), who="bo", at=T0_MS + 5)
    assert version(added) == 2 and added.status == "running"
    assert [m.name for m in added.batch_metrics] == ["likes_7d"] and added.stream_metrics == current.metrics
    step = added.history[-1]
    assert (step.who, step.at, step.why) == ("bo", T0_MS + 5, "metric likes_7d added (source batch)")
    assert added.streamed() == current.model_copy(update={"history": added.history})
    stopped = transition(current, to="stopped", who="a", at=T0_MS + 1)
    assert add_batch_metric(stopped, batch_metric(), who="a", at=T0_MS + 2).status == "stopped"


def test_adding_a_metric_is_refused_with_the_field_named() -> None:
    current = running()
    with pytest.raises(InvalidSpec, match=r"^source: metric 'likes_7d' .* is computed in batch only"):
        add_batch_metric(current, batch_metric(source="stream"), who="a", at=T0_MS)
    with pytest.raises(InvalidSpec, match=r"^name: duplicate metric 'plays'"):
        add_batch_metric(current, batch_metric("plays"), who="a", at=T0_MS)
    draft = apply_spec(None, spec(status="draft"), who="a", at=T0_MS)
    with pytest.raises(TransitionRefused, match=r"^status: .* is draft; .*apply the spec with the metric instead"):
        add_batch_metric(draft, batch_metric(), who="a", at=T0_MS)
    decided = transition(current, to="decided", who="a", at=T0_MS + 1, force=True)
    with pytest.raises(TransitionRefused, match=r"^status: .* is decided"):
        add_batch_metric(decided, batch_metric(), who="a", at=T0_MS + 2)


def test_a_spec_needs_a_success_metric_the_stream_computes() -> None:
    only_batch = [{**batch_metric().model_dump(mode="json", exclude_none=True)}]
    with pytest.raises(InvalidSpec, match=r"metrics: at least one success metric computed by the stream"):
        spec(metrics=only_batch)
