"""The simulator's power warning: from the engine's power calculator, for proportion guardrails with margins."""

from __future__ import annotations

from experiments.spec import DEMO_SPEC_PATH, load_spec
from experiments.stats import proportion_sample_size_per_arm
from infra.simulation.power import power_warning, required_users

SPEC = load_spec(DEMO_SPEC_PATH)


def test_the_requirement_is_the_engines_one_sided_sample_size_scaled_by_holdout_and_weight() -> None:
    (need,) = required_users(SPEC, baselines={"retention_d7": 0.86, "plays_7d": 12.0}, held_out=0.05)
    per_arm = proportion_sample_size_per_arm(baseline=0.86, relative_mde=-0.01, alpha=0.1, power=0.8)
    assert need.metric == "retention_d7" and need.per_arm == -(-per_arm // 1)
    assert need.users == -(-need.per_arm // (0.5 * 0.95))


def test_too_few_users_are_warned_about_and_enough_are_not() -> None:
    (need,) = required_users(SPEC, baselines={"retention_d7": 0.86})
    warning = power_warning(SPEC, users=300, baselines={"retention_d7": 0.86})
    assert warning is not None and "retention_d7" in warning and f"--users {need.users}" in warning
    assert power_warning(SPEC, users=need.users, baselines={"retention_d7": 0.86}) is None


def test_without_a_baseline_nothing_is_claimed() -> None:
    assert required_users(SPEC, baselines={}) == [] and power_warning(SPEC, users=10, baselines={}) is None
