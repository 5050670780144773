"""The report's decision per variant against the truth: decisive only far enough from the rule's boundaries."""

from __future__ import annotations

from typing import Any

import pytest

from infra.demo.against_truth import Z_MISS, decisions_against_truth, decisive

Z90 = 1.6448536269514722  # the two-sided 90 % interval's critical value


def metric(name: str, role: str, direction: str, rel: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A report's metric: per variant a relative estimate and its standard error (as a 90 % interval)."""
    return {"name": name, "role": role, "direction": direction, "comparisons": [
        {"variant": v, "interval_level": 0.9,
         "relative": {"estimate": est, "ci_low": est - Z90 * se, "ci_high": est + Z90 * se}}
        for v, (est, se) in rel.items()]}


def truth_of(effects: dict[str, dict[str, float]], decisions: dict[str, str]) -> dict[str, Any]:
    roles = {"plays_7d": ("success", None), "retention_d7": ("guardrail", 0.01)}
    return {"kind": "ab", "units": dict.fromkeys(decisions, 600),
            "variants": {v: {"decision": d} for v, d in decisions.items()},
            "metrics": {name: {"role": roles[name][0], "margin": roles[name][1], "effects": {
                v: {"relative": e, "verdict": _verdict(name, e)} for v, e in by_variant.items()}}
                for name, by_variant in effects.items()}}


def _verdict(name: str, effect: float) -> str:
    if name == "retention_d7":
        return "worse" if effect < -0.01 else "within_margin"
    return "better" if effect > 0 else "worse"


def report_of(verdicts: dict[str, str], se: float) -> dict[str, Any]:
    variants = list(verdicts)
    return {"experiment": "x", "control": "control", "alpha": 0.05, "srm": {"passed": True},
            "decision": {"variants": {v: {"verdict": d} for v, d in verdicts.items()}},
            "metrics": [metric("plays_7d", "success", "increase", dict.fromkeys(variants, (0.0, se))),
                        metric("retention_d7", "guardrail", "increase", dict.fromkeys(variants, (0.0, se)))]}


def test_a_guardrail_loss_is_decisive_only_beyond_the_margin_by_the_test_and_a_miss() -> None:
    needed = Z90 + Z_MISS  # the non-inferiority test's one-sided 5 % critical value, plus 1e-4 of miss
    for loss, expected in ((0.01 + 1.01 * needed * 0.02, True), (0.01 + 0.99 * needed * 0.02, False)):
        truth = truth_of({"plays_7d": {"t": 0.3}, "retention_d7": {"t": -loss}}, {"t": "do_not_ship"})
        tell = decisive(report_of({"t": "do_not_ship"}, se=0.02), truth, "t", alpha=0.05)
        assert tell["decisive"] is expected
        assert tell["size_factor"] == pytest.approx((needed * 0.02 / (loss - 0.01)) ** 2)


def test_a_near_tie_is_shown_not_checked_and_a_decisive_mismatch_is_caught() -> None:
    truth = truth_of({"plays_7d": {"t": 0.30, "l": 0.02}, "retention_d7": {"t": -0.30, "l": 0.0}},
                     {"t": "do_not_ship", "l": "ship"})
    rows = {r["variant"]: r for r in decisions_against_truth({"x": report_of({"t": "ship", "l": "inconclusive"},
                                                                               se=0.02)}, {"x": truth})}
    assert rows["t"]["decisive"] and rows["t"]["matches"] is False  # a defect, not chance
    assert not rows["l"]["decisive"] and rows["l"]["matches"] is False  # a near tie: not counted
    assert rows["l"]["size_factor"] > 1


def test_a_holdout_is_never_decided() -> None:
    truth = {**truth_of({"plays_7d": {"t": 0.5}, "retention_d7": {"t": -0.5}}, {"t": "do_not_ship"}), "kind": "holdout"}
    (row,) = decisions_against_truth({"x": report_of({"t": "inconclusive"}, se=0.01)}, {"x": truth})
    assert row["decided"] is False and row["decisive"] is False and row["matches"] is None
