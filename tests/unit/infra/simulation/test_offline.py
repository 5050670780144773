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


def test_the_harmful_treatment_of_the_auto_stop_test_returns_far_less_under_the_model() -> None:
    """The rates the chance computation of tests/integration/test_auto_stop.py assumes: the model's
    expected day-1 return (the mean chance of the session in [1 d, 2 d) after first exposure) is at
    least 0.8 in control and at most 0.3 in the treatment its return shift harms."""
    from infra.simulation.model import DAY_MS, ModelParams
    from tests.integration.test_auto_stop import HARM, SPEC, USERS

    params = ModelParams(arrival_ms=2 * DAY_MS, return_shifts=((SPEC.id, "treatment", HARM),))
    people = run_offline(users=USERS, seed=11, specs=[SPEC], params=params).people
    chances: dict[str, list[float]] = {"control": [], "treatment": []}
    for user in people:
        exposed_at, variant = user.first_exposures[SPEC.id]
        day1 = [s.p_active for s in user.slots if exposed_at + DAY_MS <= s.ts < exposed_at + 2 * DAY_MS]
        chances[variant].append(sum(day1))  # one possible session a day
    means = {v: sum(c) / len(c) for v, c in chances.items()}
    assert means["control"] >= 0.8 and means["treatment"] <= 0.3, means
