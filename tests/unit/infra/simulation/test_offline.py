"""The in-process run shows the designed effects at the demo's size."""

from __future__ import annotations

import pytest

from infra.simulation.offline import load_demo_spec, run_offline

DEMO_USERS = 2000


@pytest.fixture(scope="module")
def demo():
    return run_offline(users=DEMO_USERS, seed=0)


def test_the_bandit_wins_plays_and_loses_retention_beyond_the_margin(demo) -> None:
    spec = load_demo_spec()
    metrics = demo.truth["metrics"]
    plays = metrics["plays_7d"]["effects"]["treatment"]
    assert plays["relative"] > 0.2
    assert metrics["ms_played_7d"]["effects"]["treatment"]["relative"] > 0.15
    retention = metrics["retention_d7"]["effects"]["treatment"]
    margin = spec.metric("retention_d7").margin
    assert retention["relative"] < -(margin + 0.07)  # clearly past the margin, not just past it
    assert metrics["skip_rate_7d"]["effects"]["treatment"]["relative"] < 0  # the bandit skips less
    assert demo.truth["decision"] == "do_not_ship"
    units = demo.truth["units"]
    assert 0.9 * DEMO_USERS < sum(units.values()) < DEMO_USERS  # 5 % holdout
    assert abs(units["control"] - units["treatment"]) < 0.1 * sum(units.values())


def test_the_bandit_learns_quickly(demo) -> None:
    curve = {(row["variant"], row["day"]): row for row in demo.learning_curve}
    assert curve[("treatment", 2)]["play_rate"] > curve[("control", 2)]["play_rate"] + 0.25
    assert curve[("treatment", 5)]["mean_reward_ms"] > curve[("treatment", 0)]["mean_reward_ms"]


def test_small_runs_are_deterministic_from_the_seed() -> None:
    a, b = run_offline(users=60, seed=4), run_offline(users=60, seed=4)
    assert a.truth == b.truth and a.counts == b.counts
    assert run_offline(users=60, seed=5).truth != a.truth
