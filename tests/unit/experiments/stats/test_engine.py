"""The engine end to end: output shape, decisions, corrections, SRM, sequential inputs, frozen results."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest
from scipy import stats

from experiments.stats import AlwaysValidDesign, Analysis, Comparison, GroupSequentialDesign, analyse
from tests.unit.experiments.stats.builders import mean_variant, simulated_input

EXAMPLE = pathlib.Path(__file__).resolve().parents[4] / "examples" / "stats_input.json"


def _comparison(out: Analysis, metric: str, variant: str = "treatment") -> Comparison:
    m = next(m for m in out.metrics if m.name == metric)
    return next(c for c in m.comparisons if c.variant == variant)


def test_example_gives_the_documented_shape_and_a_ship():
    out = analyse(json.loads(EXAMPLE.read_text()))
    doc = out.to_dict()
    assert set(doc) >= {"metrics", "srm", "decision"}
    for m in doc["metrics"]:
        for c in m["comparisons"]:
            assert set(c) >= {"variant", "absolute", "relative", "p_value", "adjusted_p_value", "significant"}
            assert set(c["absolute"]) == set(c["relative"]) == {"estimate", "ci_low", "ci_high"}
    assert set(doc["srm"]) >= {"p_value", "passed"}
    assert out.decision.verdict == "ship"
    assert out.metrics[0].cuped is not None and out.metrics[0].cuped.variance_reduction > 0.5


def test_results_are_frozen():
    out = analyse(json.loads(EXAMPLE.read_text()))
    comparison = out.metrics[0].comparisons[0]
    for result, field in ((out, "alpha"), (out.metrics[0], "name"), (comparison, "p_value"),
                          (comparison.relative, "ci_low"), (out.srm, "passed"), (out.decision, "verdict"),
                          (out.decision.variants["treatment"], "verdict")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, field, None)
    assert isinstance(out.metrics, tuple) and isinstance(out.decision.reasons, tuple)


def test_proportion_comparison_matches_the_closed_form():
    data = {"control": "c", "correction": "none", "decision_rule": "all_metrics_corrected",
            "metrics": [{"name": "conv", "kind": "proportion", "role": "success",
                         "variants": [{"name": "c", "n": 5000, "sum": 500}, {"name": "t", "n": 5000, "sum": 560}]}]}
    c = _comparison(analyse(data), "conv", "t")
    se = np.sqrt(0.1 * 0.9 / 5000 + 0.112 * 0.888 / 5000)
    assert c.p_value == pytest.approx(2 * stats.norm.sf(0.012 / se), rel=1e-9)
    assert c.absolute.ci_low == pytest.approx(0.012 - stats.norm.isf(0.025) * se, rel=1e-9)
    assert c.relative.estimate == pytest.approx(0.12, rel=1e-9)
    risk_aware = _comparison(analyse(data | {"decision_rule": "risk_aware"}), "conv", "t")
    assert risk_aware.p_value == pytest.approx(stats.norm.sf(0.012 / se), rel=1e-9)
    assert risk_aware.absolute.ci_low == pytest.approx(0.012 - stats.norm.isf(0.05) * se, rel=1e-9)
    assert [t.test for t in risk_aware.tests] == ["superiority", "deterioration"]
    assert risk_aware.tests[1].p_value == pytest.approx(stats.norm.cdf(0.012 / se), rel=1e-9)


def test_multi_arm_bonferroni_across_metrics_and_arms():
    data = simulated_input(lifts={"control": 0, "a": 0.05, "b": 0.0}, correction="bonferroni")
    data["decision_rule"] = "all_metrics_corrected"
    out = analyse(data)
    comps = [c for m in out.metrics for c in m.comparisons]
    assert len(comps) == 4
    for c in comps:
        assert c.adjusted_p_value == pytest.approx(min(1.0, 4 * c.p_value))
    assert out.decision.variants["a"].verdict == "ship"
    assert out.decision.variants["b"].verdict == "inconclusive"
    assert out.decision.verdict == "ship"
    assert any(r.startswith("a (ship)") for r in out.decision.reasons)


@pytest.mark.parametrize("correction", ["none", "bonferroni", "holm", "bh"])
def test_intervals_agree_with_corrected_significance(correction):
    data = simulated_input(lifts={"control": 0, "a": 0.02, "b": 0.03, "c": -0.02}, n=3000, seed=4,
                           correction=correction, guardrail_lift={"a": -0.01})
    out = analyse(data | {"decision_rule": "all_metrics_corrected"})
    for m in out.metrics:
        for c in m.comparisons:
            if c.test == "superiority":
                excludes = c.absolute.ci_low > 0 or c.absolute.ci_high < 0
            else:
                excludes = c.relative.ci_low > -m.non_inferiority_margin
            assert excludes == c.significant, (m.name, c)
    risk_aware = analyse(data)
    for m in risk_aware.metrics:
        for c in m.comparisons:  # one-sided tests: the lower bound of the 1 - 2 alpha_i interval decides
            bound = c.absolute.ci_low > 0 if c.test == "superiority" else c.relative.ci_low > -m.non_inferiority_margin
            assert bound == c.significant, (m.name, c)


def test_srm_blocks_the_decision():
    data = simulated_input(lifts={"control": 0, "treatment": 0.1})
    data["exposed"] = {"control": 10000, "treatment": 10600}
    out = analyse(data)
    assert not out.srm.passed and out.srm.p_value < 0.001
    assert out.decision.verdict == "inconclusive"
    assert "sample ratio mismatch" in out.decision.reasons[0]
    assert "not trustworthy" in out.decision.reasons[0]


def test_srm_uses_first_metric_n_and_expected_weights():
    data = simulated_input(lifts={"control": 0, "treatment": 0.1}, n=3000)
    data["expected_weights"] = {"control": 0.9, "treatment": 0.1}
    out = analyse(data)
    assert out.srm.counts_from == "metrics[0].n" and not out.srm.passed


def test_guardrail_worse_than_its_margin_means_do_not_ship():
    data = simulated_input(lifts={"control": 0, "treatment": 0.1}, guardrail_lift={"treatment": -0.08})
    out = analyse(data)
    assert _comparison(out, "sessions").status == "inferior"
    assert out.decision.verdict == "do_not_ship"
    assert "sessions" in out.decision.reasons[0]


def test_guardrail_direction_decrease():
    # sessions here stand for a "lower is better" metric: a 8 % drop is good, an 8 % rise is bad
    good = analyse(simulated_input(lifts={"control": 0, "treatment": 0.1}, guardrail_lift={"treatment": -0.08},
                                   guardrail_direction="decrease"))
    assert good.decision.verdict == "ship"
    bad = analyse(simulated_input(lifts={"control": 0, "treatment": 0.1}, guardrail_lift={"treatment": 0.08},
                                  guardrail_direction="decrease"))
    assert bad.decision.verdict == "do_not_ship"


def test_guardrail_without_margin_harmed_and_success_metric_worse():
    data = simulated_input(lifts={"control": 0, "treatment": 0.1}, guardrail_lift={"treatment": -0.05}, margin=None)
    out = analyse(data)
    assert out.decision.verdict == "do_not_ship"
    assert _comparison(out, "sessions").test == "deterioration"
    assert analyse(data | {"decision_rule": "all_metrics_corrected"}).decision.verdict == "do_not_ship"
    worse_input = simulated_input(lifts={"control": 0, "treatment": -0.1})
    worse = analyse(worse_input)
    assert worse.decision.verdict == "do_not_ship"
    assert "success metric 'minutes' has significantly deteriorated" in worse.decision.reasons[0]
    old = analyse(worse_input | {"decision_rule": "all_metrics_corrected"})
    assert "success metric 'minutes' is significantly worse" in old.decision.reasons[0]


def test_non_inferiority_not_shown_keeps_running():
    data = simulated_input(lifts={"control": 0, "treatment": 0.1}, n=300, margin=0.001)
    out = analyse(data)
    assert out.decision.verdict == "inconclusive"
    assert any("non-inferiority" in r for r in out.decision.reasons)


def test_too_little_data_is_reported_not_raised():
    data = {"control": "c", "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": [
        {"name": "c", "n": 0, "sum": 0, "sum_sq": 0}, {"name": "t", "n": 1, "sum": 2.0, "sum_sq": 4.0}]}]}
    out = analyse(data)
    c = out.metrics[0].comparisons[0]
    assert c.status == "insufficient_data" and c.p_value is None and not c.significant
    assert out.decision.verdict == "inconclusive"
    json.dumps(out.to_dict(), allow_nan=False)


def test_cuped_input_narrows_the_interval():
    rng = np.random.default_rng(8)
    variants, plain = [], []
    for name, lift in (("control", 0.0), ("treatment", 0.5)):
        pre = rng.normal(20, 5, 2000)
        y = pre + lift + rng.normal(0, 2, 2000)
        variants.append(mean_variant(name, y, pre))
        plain.append(mean_variant(name, y))
    base = {"control": "control", "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": plain}]}
    adj = {"control": "control", "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": variants}]}
    w_plain = _comparison(analyse(base), "m").absolute
    w_adj = _comparison(analyse(adj), "m").absolute
    assert (w_adj.ci_high - w_adj.ci_low) < 0.5 * (w_plain.ci_high - w_plain.ci_low)


def test_sequential_methods_widen_intervals_and_report_boundaries():
    data = simulated_input(lifts={"control": 0, "treatment": 0.03}, seed=9)
    fixed = _comparison(analyse(data), "minutes")
    data["sequential"] = {"method": "group_sequential", "information_fraction": 0.6, "looks": [0.2, 0.4, 0.6]}
    gs = analyse(data)
    assert isinstance(gs.sequential, GroupSequentialDesign)
    assert gs.sequential.looks == (0.2, 0.4, 0.6)
    assert gs.sequential.boundary_z > stats.norm.isf(0.025)
    assert _comparison(gs, "minutes").p_value > fixed.p_value
    data["sequential"] = {"method": "always_valid", "tuning_n": 8000}
    av = analyse(data)
    assert _comparison(av, "minutes").p_value > fixed.p_value
    assert av.sequential == AlwaysValidDesign(tuning_n=8000)
    assert av.srm.test == "anytime_valid" and gs.srm.test == "anytime_valid" and analyse(
        simulated_input(lifts={"control": 0, "treatment": 0.03}, seed=9)).srm.test == "chi_square"
    assert av.to_dict()["sequential"] == {"method": "always_valid", "tuning_n": 8000}
