"""The gate's evaluation of a spec on logged decisions, and a decision's long-term value."""

from __future__ import annotations

import pytest

from experiments.ope import GateRefused, GateRule
from experiments.spec import DEMO_SPEC_PATH, load_spec
from experiments.surrogate import Surrogate
from infra.cli.gate import evaluate_spec, long_term_value
from streams.events import Decision
from tests.helpers import T0_MS

SURROGATE = Surrogate(outcome="retention_d7", signals=("genres_discovered", "plays"),
                      coefficients={"genres_discovered": 0.05, "plays": 0.01}, intercept=0.4, l2=1.0, n=100,
                      experiments=("past",))


def decision(arm: str, context: dict[str, float]) -> Decision:
    return Decision(decision_id="d", user_id="u", ts=T0_MS, policy="uniform", policy_version=0, arm=arm,
                    propensity=0.5, arms=["jazz", "rock"], context=context)


def test_a_decision_is_worth_the_surrogate_value_of_what_it_earned() -> None:
    assert long_term_value(SURROGATE, decision("jazz", {"affinity_jazz_7d": 0.0}), 1.0) == pytest.approx(0.06)
    assert long_term_value(SURROGATE, decision("jazz", {"affinity_jazz_7d": 0.3}), 2.0) == pytest.approx(0.02)
    assert long_term_value(SURROGATE, decision("jazz", {}), 0.0) == 0.0


def test_no_logged_decisions_is_a_refusal_that_says_what_to_do() -> None:
    with pytest.raises(GateRefused, match="no off-policy evaluation possible.*--no-gate"):
        evaluate_spec(load_spec(DEMO_SPEC_PATH), pairs=[], snapshots={}, surrogate=SURROGATE, rule=GateRule(),
                      who="ana", at=T0_MS)
