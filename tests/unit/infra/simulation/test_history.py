"""The simulated archive of past experiments: rows as the topics would give them, one per exposed user."""

from __future__ import annotations

from infra.simulation.history import PAST, archive_rows, past_spec


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
