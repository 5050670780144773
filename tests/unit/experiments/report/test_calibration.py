"""The calibration history: every gated decision's predicted and realized effects, oldest first."""

from __future__ import annotations

from experiments.report import calibration_table


def row(experiment: str, predicted: float, realized: float | None, covered: bool | None) -> dict[str, object]:
    return {"experiment": experiment, "variant": "treatment", "metric": "plays_7d", "reward": "short_term",
            "predicted": predicted, "predicted_low": predicted - 0.1, "predicted_high": predicted + 0.1,
            "realized": realized, "realized_low": None if realized is None else realized - 0.05,
            "realized_high": None if realized is None else realized + 0.05, "covered": covered}


def test_the_table_lists_decisions_oldest_first_and_counts_coverage_and_signs() -> None:
    table = calibration_table([(20, [row("later", -0.2, 0.1, False)]), (10, [row("first", 0.2, 0.25, True)]),
                               (30, [row("unmeasured", 0.1, None, None)])])
    lines = table.splitlines()
    assert lines[1].startswith("first") and lines[2].startswith("later") and lines[3].startswith("unmeasured")
    assert "+20.0% [+10.0%, +30.0%]" in lines[1] and "+25.0%" in lines[1]
    assert lines[-1] == ("2 predictions with a realized effect: 1 inside the predicted interval, "
                         "1 with the realized sign")


def test_without_gated_decisions_it_says_so() -> None:
    assert calibration_table([]).endswith("no decided experiment went through the evaluation gate yet")
