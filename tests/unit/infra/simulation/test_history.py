"""The simulated archive of past experiments: rows as the topics would give them, one per exposed user."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from experiments.surrogate import OutcomeJoin, SurrogateRow
from infra.simulation import history
from infra.simulation.history import PAST, archive, archive_rows, fit_and_validate, main, outcome_join, past_spec
from infra.simulation.model import DAY_MS, ORIGIN_MS
from streams.events import EventType, ListeningEvent


@pytest.fixture(scope="module")
def both_outcomes() -> dict[str, list[SurrogateRow]]:
    return archive(users=20, seed=3, outcomes=("d7", "d28"))


def test_every_past_experiment_gives_one_row_per_exposed_user_with_the_signals() -> None:
    rows = archive_rows(users=40, seed=3)
    experiments = {row.experiment for row in rows}
    assert experiments == {name for name, _, _ in PAST}
    for name in experiments:
        units = [row.unit for row in rows if row.experiment == name]
        assert len(units) == len(set(units)) and 0 < len(units) <= 40
    assert {row.variant for row in rows} == {"control", "treatment"}
    assert all(row.outcome in (0.0, 1.0) and row.signals["plays"] >= 0 for row in rows)


def test_a_past_spec_serves_its_two_policies() -> None:
    spec = past_spec("past_x", ("popularity", {"epsilon": 0.2}), ("linucb", {}))
    assert [(v.name, v.policy, v.policy_params) for v in spec.variants] == [
        ("control", "popularity", {"epsilon": 0.2}), ("treatment", "linucb", {})]
    assert spec.salt == "past_x/sim" and spec.evaluation is None


def test_day_7_is_the_default_outcome_and_its_join_is_the_default_join() -> None:
    d7, default = outcome_join("d7"), OutcomeJoin()
    assert (d7.signal_horizon_ms, d7.outcome_delay_ms, d7.outcome_length_ms, d7.attribution_window_ms) == (
        default.signal_horizon_ms, default.outcome_delay_ms, default.outcome_length_ms, default.attribution_window_ms)


def test_a_day_28_row_exists_only_once_its_interval_has_closed() -> None:
    join = outcome_join("d28")
    join.add_exposure("x1", "exp", "control", "u1", ORIGIN_MS)
    join.add_exposure("x2", "exp", "control", "u2", ORIGIN_MS)
    for event_id, unit, ts in (("e1", "u1", ORIGIN_MS + 28 * DAY_MS), ("e2", "u2", ORIGIN_MS + 28 * DAY_MS - 1)):
        join.add_event(ListeningEvent(event_id=event_id, user_id=unit, ts=ts, type=EventType.SESSION_START))
    assert join.rows(watermark=ORIGIN_MS + 29 * DAY_MS - 1) == [] and join.pending(ORIGIN_MS + 29 * DAY_MS - 1) == 2
    assert [(r.unit, r.outcome) for r in join.rows(watermark=ORIGIN_MS + 29 * DAY_MS)] == [("u1", 1.0), ("u2", 0.0)]


def test_a_run_long_enough_for_day_28_gives_the_same_day_7_rows(both_outcomes: dict[str, list[SurrogateRow]]) -> None:
    assert both_outcomes["d7"] == archive_rows(users=20, seed=3)
    d7, d28 = both_outcomes["d7"], both_outcomes["d28"]
    assert [(r.experiment, r.variant, r.unit, r.signals) for r in d28] == [
        (r.experiment, r.variant, r.unit, r.signals) for r in d7]  # the same first-day signals
    assert all(r.outcome in (0.0, 1.0) for r in d28) and [r.outcome for r in d28] != [r.outcome for r in d7]


def test_the_day_28_surrogate_is_validated_on_every_held_out_experiment_with_intervals(
        both_outcomes: dict[str, list[SurrogateRow]]) -> None:
    model, validity = fit_and_validate(both_outcomes["d28"], "d28")
    assert model.outcome == "retention_d28" and model.n == len(both_outcomes["d28"])
    assert [row.experiment for row in validity.rows] == sorted(name for name, _, _ in PAST)
    for row in validity.rows:
        assert row.variant == "treatment" and row.control == "control" and row.units > 0
        for effect in (row.surrogate_effect, row.realized_effect):
            assert effect.ci_low <= effect.estimate <= effect.ci_high and effect.confidence == 0.95


def test_the_command_prints_the_validity_of_each_outcome(
        both_outcomes: dict[str, list[SurrogateRow]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[list[str]] = []

    def archive_already_run(*, outcomes: Sequence[str], **_: object) -> dict[str, list[SurrogateRow]]:
        asked.append(list(outcomes))
        return both_outcomes

    monkeypatch.setattr(history, "archive", archive_already_run)
    assert main(["--outcome", "both"]) == 0 and asked == [["d7", "d28"]]
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"d7", "d28"} and report["d28"]["surrogate"]["outcome"] == "retention_d28"
    for outcome in report.values():
        assert len(outcome["validity"]) == len(PAST) and {"agreement", "sign_agreement"} <= set(outcome)
