"""Ground truth on small hand-made histories, against closed forms."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from experiments.spec import SPECS_DIR, load_spec
from infra.simulation.model import DAY_MS, Expected, Slot
from infra.simulation.offline import load_demo_spec
from infra.simulation.truth import compute_truth, user_values, write_truth

T0 = 1_767_900_000_000
SPEC = load_demo_spec()


@dataclass
class Hist:
    user_id: str
    variant: str | None
    exposed_at: int | None
    expected: list[Expected] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    experiment: str = SPEC.id

    @property
    def first_exposures(self) -> dict[str, tuple[int, str]]:
        if self.variant is None or self.exposed_at is None:
            return {}
        return {self.experiment: (self.exposed_at, self.variant)}


def rec(ts: int, p: float, arm: str = "jazz") -> Expected:
    return Expected(ts=ts, plays=p, skips=1 - p, ms_played=p * 210_000 + (1 - p) * 17_500, arm=arm)


def test_user_values_sum_inside_the_window_and_combine_retention_slots() -> None:
    user = Hist("u", "control", T0, expected=[
        rec(T0 - 1, 0.9),  # before exposure: outside
        rec(T0, 0.5),
        rec(T0 + 7 * DAY_MS - 1, 0.25),
        Expected(ts=T0 + 3 * DAY_MS, plays=1.0, skips=0.0, ms_played=210_000.0),
        rec(T0 + 7 * DAY_MS, 0.8),  # the window is half-open
    ], slots=[Slot(T0 + 6 * DAY_MS, 6, 0.9, True), Slot(T0 + 7 * DAY_MS + 5, 7, 0.6, False),
              Slot(T0 + 7 * DAY_MS + 9, 7, 0.5, True), Slot(T0 + 8 * DAY_MS, 8, 0.7, True)])
    values = user_values(user, T0)
    assert values["plays"] == pytest.approx(0.5 + 0.25 + 1.0)
    assert values["skips"] == pytest.approx(0.5 + 0.75)
    assert values["ms_played"] == pytest.approx(0.75 * 210_000 + 1.25 * 17_500 + 210_000)
    assert values["active"] == pytest.approx(1 - 0.4 * 0.5)


def test_truth_per_variant_effects_and_decision(tmp_path) -> None:
    users = [
        Hist("c1", "control", T0, [rec(T0, 0.5)], [Slot(T0 + 7 * DAY_MS + 1, 7, 0.8, True)]),
        Hist("c2", "control", T0, [rec(T0, 0.3), rec(T0 + 1, 0.3)], [Slot(T0 + 7 * DAY_MS + 1, 7, 0.6, True)]),
        Hist("t1", "treatment", T0, [rec(T0, 0.9), rec(T0 + 1, 0.9)], [Slot(T0 + 7 * DAY_MS + 1, 7, 0.5, True)]),
        Hist("h", None, None, [rec(T0, 1.0)]),  # holdout: not in the experiment
        Hist("n", "treatment", None),  # never exposed
    ]
    truth = compute_truth(users, SPEC)
    assert truth["units"] == {"control": 2, "treatment": 1}
    plays = truth["metrics"]["plays_7d"]
    assert plays["means"] == pytest.approx({"control": 0.55, "treatment": 1.8})
    assert plays["effects"]["treatment"]["absolute"] == pytest.approx(1.25)
    assert plays["effects"]["treatment"]["relative"] == pytest.approx(1.25 / 0.55)
    skip = truth["metrics"]["skip_rate_7d"]["means"]
    assert skip["control"] == pytest.approx((0.5 + 0.7 + 0.7) / 3) and skip["treatment"] == pytest.approx(0.1)
    retention = truth["metrics"]["retention_d7"]
    assert retention["means"] == pytest.approx({"control": 0.7, "treatment": 0.5})
    assert retention["effects"]["treatment"]["verdict"] == "worse"  # -28.6 % against a 1 % margin
    assert plays["effects"]["treatment"]["verdict"] == "better"
    assert truth["decision"] == "do_not_ship"
    assert truth["srm"]["expected_shares"] == {"control": 0.5, "treatment": 0.5}
    path = write_truth(tmp_path / "t" / "truth.json", truth)
    assert path.read_text().startswith("{")


def test_a_treatment_better_everywhere_ships() -> None:
    slot = Slot(T0 + 7 * DAY_MS + 1, 7, 0.7, True)
    users = [Hist("c", "control", T0, [rec(T0, 0.5)], [slot]), Hist("t", "treatment", T0, [rec(T0, 0.6)], [slot])]
    truth = compute_truth(users, SPEC)
    assert truth["metrics"]["retention_d7"]["effects"]["treatment"]["verdict"] == "within_margin"
    assert truth["decision"] == "ship"


def test_with_three_variants_each_gets_its_decision_and_the_experiment_ships_if_one_does() -> None:
    spec = load_spec(SPECS_DIR / "long_term_bandit.yaml")
    slot, worse = Slot(T0 + 7 * DAY_MS + 1, 7, 0.7, True), Slot(T0 + 7 * DAY_MS + 1, 7, 0.5, True)
    users = [Hist("c", "control", T0, [rec(T0, 0.5)], [slot]), Hist("t", "treatment", T0, [rec(T0, 0.9)], [worse]),
             Hist("l", "long_term", T0, [rec(T0, 0.6)], [slot])]
    for user in users:
        user.experiment = spec.id
    truth = compute_truth(users, spec)
    assert truth["variants"] == {"treatment": {"decision": "do_not_ship"}, "long_term": {"decision": "ship"}}
    assert truth["decision"] == "ship"  # as the report combines its variants: some variant ships
