"""The gate's record before the demo's ranker experiment serves, on the simulated archive."""

from __future__ import annotations

from experiments.spec import DEMO_SPEC_PATHS, load_spec
from infra.demo.gate import history_evaluation


def test_the_ranker_experiment_gets_a_record_per_gated_variant_and_the_layout_none() -> None:
    ranker, layout = (load_spec(path) for path in DEMO_SPEC_PATHS[:2])
    evaluation = history_evaluation(ranker, users=120, seed=100, at=1_767_225_600_000)
    assert evaluation is not None and evaluation.decisions > 500
    assert set(evaluation.variants) == {"treatment", "long_term"}
    refused = any(not v.passed for v in evaluation.variants.values())
    assert evaluation.gate == ("overridden" if refused else "passed")
    for variant in evaluation.variants.values():
        assert {r.reward for r in variant.rewards} == {"short_term", "long_term"}
        assert variant.passed is (not variant.reasons)
    assert history_evaluation(layout) is None  # no variant serves another policy than the control's
