"""The risk-aware decision rule end to end: its families of tests, and its error rates by seeded simulation.

The simulations draw each variant's sufficient statistics directly (normal data: the sum is
normal and the centred sum of squares a scaled chi-square, exactly; proportions: a binomial
count) and run the whole engine on each replicate. Rates are asserted against binomial
bounds at a one-sided tail of 1e-5, so a correct engine fails by chance less often than that.
"""

import numpy as np
import pytest
from scipy import stats

from experiments.stats import analyse

ALPHA = 0.05
TAIL = 1e-5
MU, SD, MARGIN = 10.0, 5.0, 0.05
P_BASE = 0.2


def _mean_variant(rng, name, n, mu, sd=SD):
    total = rng.normal(n * mu, np.sqrt(n) * sd)
    return {"name": name, "n": n, "sum": float(total), "sum_sq": float(sd**2 * rng.chisquare(n - 1) + total**2 / n)}


def _proportion_variant(rng, name, n, p):
    return {"name": name, "n": n, "sum": int(rng.binomial(n, p))}


def _experiment(rng, n, *, success_lift=0.0, mde=None):
    """3 success metrics (2 means, 1 proportion) and 3 guardrails with a 5% margin; guardrails unchanged."""
    metrics = []
    for k in range(2):
        metrics.append({"name": f"success_{k}", "kind": "mean", "role": "success", "mde": mde, "variants": [
            _mean_variant(rng, "control", n, MU), _mean_variant(rng, "treatment", n, MU * (1 + success_lift))]})
    metrics.append({"name": "success_conversion", "kind": "proportion", "role": "success", "mde": mde, "variants": [
        _proportion_variant(rng, "control", n, P_BASE),
        _proportion_variant(rng, "treatment", n, P_BASE * (1 + success_lift))]})
    for k in range(3):
        metrics.append({"name": f"guardrail_{k}", "kind": "mean", "role": "guardrail",
                        "non_inferiority_margin": MARGIN, "direction": "increase" if k else "decrease",
                        "variants": [_mean_variant(rng, "control", n, MU), _mean_variant(rng, "treatment", n, MU)]})
    return {"alpha": ALPHA, "control": "control", "metrics": metrics}


def _at_most(count, trials, rate):
    return count <= stats.binom.isf(TAIL, trials, rate)


def _at_least(count, trials, rate):
    return count >= stats.binom.ppf(TAIL, trials, rate)


def test_aa_false_ship_and_false_deterioration_rates_stay_within_alpha():
    rng = np.random.default_rng(181)
    replicates = 2000
    verdicts = [analyse(_experiment(rng, 3000)).decision.verdict for _ in range(replicates)]
    ships = sum(v == "ship" for v in verdicts)
    stops = sum(v == "do_not_ship" for v in verdicts)
    assert _at_most(ships, replicates, ALPHA), ships
    assert _at_most(stops, replicates, ALPHA), stops  # deterioration tests at deterioration_alpha = alpha
    assert ships > 0  # the rule does spend its alpha on the success metrics


def _planned_n(mde):
    """The sample size item 1 plans: the largest control size over the metrics, from exact moments."""
    plan = np.random.default_rng(0)
    data = _experiment(plan, 100_000, mde=mde)
    for m in data["metrics"]:  # exact population moments instead of a draw
        for v in m["variants"]:
            n = v["n"]
            if m["kind"] == "mean":
                v["sum"], v["sum_sq"] = n * MU, n * (SD**2 + MU**2)
            else:
                v["sum"] = int(n * P_BASE)
    out = analyse(data)
    powers = [c.power for m in out.metrics for c in m.comparisons]
    assert all(p is not None for p in powers)
    assert [p.target_power for p in powers] == pytest.approx([1 - 0.2 / 4] * 6)  # 3 guardrails: 1 - beta / (G + 1)
    return max(p.required_n_control for p in powers)


def test_power_of_the_rule_reaches_the_planned_power_at_the_planned_sample_size():
    mde = 0.04
    n = _planned_n(mde)
    rng = np.random.default_rng(182)
    replicates = 500
    ships = sum(analyse(_experiment(rng, n, success_lift=mde, mde=mde)).decision.verdict == "ship"
                for _ in range(replicates))
    assert _at_least(ships, replicates, 0.8), (ships, n)


def test_guardrails_need_no_correction_and_success_metrics_are_corrected_among_themselves():
    rng = np.random.default_rng(3)
    out = analyse(_experiment(rng, 3000, success_lift=0.03))
    families = {m.name: [(t.test, t.family) for t in m.comparisons[0].tests] for m in out.metrics}
    assert families["success_0"] == [("superiority", "success"), ("deterioration", "deterioration")]
    assert families["guardrail_1"] == [("non_inferiority", "guardrail"), ("deterioration", "deterioration")]
    for m in out.metrics:
        test = m.comparisons[0].tests[0]
        if test.family == "guardrail":
            assert test.level == ALPHA and test.adjusted_p_value == test.p_value
    success = sorted(m.comparisons[0].tests[0].p_value for m in out.metrics if m.role == "success")
    holm = sorted(m.comparisons[0].tests[0].adjusted_p_value for m in out.metrics if m.role == "success")
    assert holm[0] == pytest.approx(min(1.0, 3 * success[0]))
    deteriorations = [m.comparisons[0].tests[1] for m in out.metrics]
    assert min(t.adjusted_p_value for t in deteriorations) == pytest.approx(
        min(1.0, 6 * min(t.p_value for t in deteriorations)))


def test_adding_guardrails_does_not_make_a_guardrail_harder_to_pass():
    rng = np.random.default_rng(4)
    data = _experiment(rng, 3000, success_lift=0.03)
    first = analyse(data).metrics[3].comparisons[0]
    fewer = analyse(data | {"metrics": data["metrics"][:4]}).metrics[3].comparisons[0]
    assert first.adjusted_p_value == fewer.adjusted_p_value and first.interval_level == fewer.interval_level
    old_rule = analyse(data | {"decision_rule": "all_metrics_corrected"}).metrics[3].comparisons[0]
    assert old_rule.adjusted_p_value > first.adjusted_p_value


def test_deterioration_alpha_sets_the_deterioration_family():
    data = {"control": "c", "metrics": [{"name": "m", "kind": "proportion", "role": "success", "variants": [
        {"name": "c", "n": 10000, "sum": 1000}, {"name": "t", "n": 10000, "sum": 930}]}]}
    loose = analyse(data)
    strict = analyse(data | {"deterioration_alpha": 0.001})
    assert loose.deterioration_alpha == ALPHA and strict.deterioration_alpha == 0.001
    assert loose.decision.verdict == "do_not_ship"
    assert strict.metrics[0].comparisons[0].tests[1].alpha == 0.001
    assert strict.decision.verdict == ("do_not_ship" if strict.metrics[0].comparisons[0].tests[1].p_value <= 0.001
                                       else "inconclusive")


def test_a_failed_health_check_blocks_the_decision():
    rng = np.random.default_rng(5)
    data = _experiment(rng, 3000, success_lift=0.05)
    assert analyse(data).decision.verdict == "ship"
    blocked = analyse(data | {"health": {"multiple_exposures": 500}})
    assert blocked.decision.verdict == "inconclusive"
    assert "saw more than one variant" in blocked.decision.reasons[0]
