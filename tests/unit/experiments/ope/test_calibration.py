"""The calibration rows a decision record stores: the gate's prediction beside the realized effect."""

from __future__ import annotations

import json

import pytest

from experiments.lifecycle import DecisionRecord, apply_spec, decision_record, transition
from experiments.ope import calibration_rows
from experiments.spec import DEMO_SPEC_PATH, EstimateRecord, Evaluation, RewardEvaluation, VariantEvaluation, load_spec
from tests.helpers import T0_MS


def estimates(value: float, low: float, high: float) -> tuple[EstimateRecord, ...]:
    return (EstimateRecord(method="ips", value=value, ci_low=low - 0.1, ci_high=high + 0.1, ess=100.0),
            EstimateRecord(method="dr", value=value, ci_low=low, ci_high=high, ess=100.0))


EVALUATION = Evaluation(gate="passed", who="ana", at=T0_MS, decisions=1000, variants={"treatment": VariantEvaluation(
    policy="linucb", passed=True, rewards=(
        RewardEvaluation(reward="short_term", candidate=estimates(1.2, 1.1, 1.3), baseline=estimates(1.0, 0.95, 1.05)),
        RewardEvaluation(reward="long_term", candidate=estimates(0.09, 0.08, 0.1), baseline=estimates(0.1, 0.09, 0.11)),
    ))})

STATISTICS = {"metrics": [
    {"name": "plays_7d", "comparisons": [{"variant": "treatment", "relative": {"estimate": 0.33, "ci_low": 0.25,
                                                                              "ci_high": 0.41}}]},
    {"name": "retention_d7", "comparisons": [{"variant": "treatment", "relative": {"estimate": -0.11,
                                                                                  "ci_low": -0.15, "ci_high": -0.07}}]},
]}


def test_each_gated_variant_gets_its_prediction_beside_the_realized_effect_per_metric() -> None:
    spec = load_spec(DEMO_SPEC_PATH).model_copy(update={"evaluation": EVALUATION})
    rows = {row.metric: row for row in calibration_rows(spec, STATISTICS)}
    assert set(rows) == {"plays_7d", "retention_d7"}  # ms played and skips: no gate reward speaks for them
    plays, retention = rows["plays_7d"], rows["retention_d7"]
    assert (plays.reward, plays.variant) == ("short_term", "treatment")
    assert (plays.predicted, plays.predicted_low, plays.predicted_high) == pytest.approx((0.2, 0.1, 0.3))
    assert (plays.realized, plays.covered) == (0.33, False)
    assert retention.reward == "long_term"
    assert (retention.predicted, retention.predicted_low, retention.predicted_high) == pytest.approx((-0.1, -0.2, 0.0))
    assert retention.covered is True
    assert calibration_rows(spec, None)[0].covered is None  # decided before any statistics
    skipped = spec.model_copy(update={"evaluation": Evaluation(gate="skipped", who="ana", at=T0_MS)})
    assert calibration_rows(skipped, STATISTICS) == ()


def test_the_decision_record_stores_the_calibration_and_old_records_still_read() -> None:
    spec = apply_spec(None, load_spec(DEMO_SPEC_PATH).model_copy(update={"evaluation": EVALUATION}),
                      who="ana", at=T0_MS)
    decided = transition(transition(spec, to="stopped", who="ana", at=T0_MS + 1), to="decided", who="ana",
                         at=T0_MS + 2)
    record = decision_record(decided, who="ana", at=T0_MS + 2, note="", forced=False, statistics=STATISTICS,
                             health=[])
    assert [row["metric"] for row in record.calibration] == ["plays_7d", "retention_d7"]
    assert DecisionRecord.from_json(record.to_json()) == record
    old = record.to_dict()
    del old["calibration"]
    assert DecisionRecord.from_json(json.dumps(old)).calibration == ()
