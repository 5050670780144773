"""Which variants the evaluation gate evaluates, and the record where it cannot run (the console)."""

from __future__ import annotations

import pytest

from experiments.ope import GateRefused
from experiments.ope.gate import carry_evaluation, gated_variants
from experiments.spec import DEMO_SPEC_PATH, Evaluation, load_spec
from experiments.surfaces import PolicyChoice
from tests.helpers import T0_MS

PASSED = Evaluation(gate="passed", who="ana", at=T0_MS, decisions=900)


def test_the_gate_evaluates_the_variants_serving_another_policy_than_the_control() -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    assert set(gated_variants(spec)) == {"treatment"}
    same = spec.model_copy(update={"variants": (spec.variants[0], spec.variants[0].model_copy(
        update={"name": "treatment"}))})
    assert gated_variants(same) == {}


def test_a_new_gated_spec_passes_only_with_no_gate_recorded_as_skipped() -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    with pytest.raises(GateRefused, match=r"variants.treatment \(.*\).*--surrogate.*no_gate"):
        carry_evaluation(None, spec, no_gate=False, who="bo", at=T0_MS + 5)
    skipped = carry_evaluation(None, spec, no_gate=True, who="bo", at=T0_MS + 5)
    assert skipped.evaluation == Evaluation(gate="skipped", who="bo", at=T0_MS + 5)


def test_a_record_in_the_body_is_never_trusted_and_a_version_keeps_the_current_record() -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    forged = spec.model_copy(update={"evaluation": PASSED})
    with pytest.raises(GateRefused):
        carry_evaluation(None, forged, no_gate=False, who="mallory", at=T0_MS + 5)
    current = spec.model_copy(update={"evaluation": PASSED})
    longer = spec.model_copy(update={"end": spec.end + 1, "evaluation": None})
    assert carry_evaluation(current, longer, no_gate=False, who="bo", at=T0_MS + 6).evaluation == PASSED
    # another policy in a gated variant is a new question: the current record does not answer it
    other = spec.model_copy(update={"variants": (spec.variants[0], spec.variants[1].model_copy(update={
        "params": {**spec.variants[1].params, "ranker": PolicyChoice(policy="epsilon_greedy")}}))})
    with pytest.raises(GateRefused):
        carry_evaluation(current, other, no_gate=False, who="bo", at=T0_MS + 6)


def test_a_spec_that_gates_nothing_passes_as_it_is() -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    plain = spec.model_copy(update={"variants": (spec.variants[0], spec.variants[0].model_copy(
        update={"name": "treatment"}))})
    assert carry_evaluation(None, plain, no_gate=False, who="bo", at=T0_MS + 5) is plain
