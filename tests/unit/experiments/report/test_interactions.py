"""Interaction checks: closed forms on hand-made cells, error rates over seeded replicates, records to cells."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.aggregation.windows import MetricEvent
from experiments.report.interactions import Cell, cells_from_records, check_interactions, shared_metrics
from experiments.spec import parse_spec
from streams.events import Exposure

DAY = 86_400_000
T0 = 1_767_225_600_000


def spec(id: str, layer: str, metrics: list[dict] | None = None) -> object:
    return parse_spec({
        "id": id, "salt": id, "start": T0, "end": T0 + 30 * DAY, "control": "c", "layer": {"name": layer},
        "variants": [{"name": "c", "weight": 0.5}, {"name": "t", "weight": 0.5}],
        "metrics": metrics or [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                                "measure": "plays", "window": {"length": "7d"}}],
    })


A, B = spec("a", "la"), spec("b", "lb")


def cells_of(samples: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str, str], Cell]:
    return {("plays", x, y): Cell(len(v), float(v.sum()), float((v * v).sum())) for (x, y), v in samples.items()}


def test_the_interaction_is_the_difference_of_effects_with_its_closed_form_error():
    samples = {("c", "c"): np.array([1.0, 2, 3]), ("t", "c"): np.array([2.0, 3, 4]),
               ("c", "t"): np.array([1.0, 2, 3]), ("t", "t"): np.array([5.0, 6, 7])}
    (result,) = check_interactions([A, B], {("a", "b"): cells_of(samples)})
    assert (result.effect_in_other_control, result.effect_in_other_treatment, result.difference) == (1.0, 4.0, 3.0)
    assert result.std_error == pytest.approx(np.sqrt(4 * 1.0 / 3))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(3.0 / np.sqrt(4 / 3)))
    assert result.users == 12 and result.experiment == "a" and result.other == "b"


def _replicate(rng: np.random.Generator, interaction: float, n: int = 400) -> dict:
    means = {("c", "c"): 0.0, ("t", "c"): 0.2, ("c", "t"): 0.1, ("t", "t"): 0.3 + interaction}
    return {("a", "b"): cells_of({k: rng.normal(m, 1.0, n) for k, m in means.items()})}


def test_no_interaction_is_flagged_at_most_alpha_of_the_time_and_a_real_one_nearly_always():
    # 2,000 seeded replicates; a correct alpha = 0.05 test flags at most 0.05 of them in expectation.
    # The bound is the binomial quantile at 1e-6: exceeding it by chance has probability below 1e-6.
    rng = np.random.default_rng(20261207)
    runs = 2000
    false_alarms = sum(check_interactions([A, B], _replicate(rng, 0.0))[0].flagged for _ in range(runs))
    assert false_alarms <= stats.binom.ppf(1 - 1e-6, runs, 0.05)
    # An interaction of 0.5 sd with 400 users a cell: power ~0.999 (z = 0.5 / 0.1 = 5); 200 replicates.
    detected = sum(check_interactions([A, B], _replicate(rng, 0.5))[0].flagged for _ in range(200))
    assert detected >= stats.binom.ppf(1e-6, 200, 0.99)


def test_only_metrics_defined_alike_are_compared():
    other = spec("o", "lo", [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                              "measure": "plays", "window": {"length": "14d"}}])
    assert shared_metrics(A, B) == list(A.metrics) and shared_metrics(A, other) == []


def test_cells_come_from_first_exposures_and_closed_windows():
    def exposure(exp: str, user: str, variant: str, ts: int, n: int = 0) -> Exposure:
        return Exposure(exposure_id=f"{exp}-{user}-{n}", experiment=exp, variant=variant, user_id=user, ts=ts)

    def play(user: str, ts: int, n: int) -> MetricEvent:
        return MetricEvent(f"{user}-e{n}", user, ts, "play", "i", "g", 1000)

    exposures = [exposure("a", "u1", "t", T0), exposure("a", "u1", "c", T0 + 5, 1),  # later: ignored
                 exposure("b", "u1", "c", T0 + DAY), exposure("a", "u2", "c", T0), exposure("b", "u2", "t", T0),
                 exposure("a", "late", "c", T0 + 20 * DAY), exposure("b", "late", "c", T0 + 20 * DAY),
                 exposure("a", "only-a", "c", T0)]
    events = [play("u1", T0 + 1, 0), play("u1", T0 + 2, 1), play("u1", T0 + 2, 1),  # a replayed duplicate
              play("u1", T0 + 8 * DAY, 2), play("u2", T0 + 3, 0)]
    cells = cells_from_records([A, B], exposures, events, closed_upto=T0 + 10 * DAY)
    assert cells[("a", "b")] == {("plays", "t", "c"): Cell(1, 2.0, 4.0), ("plays", "c", "t"): Cell(1, 1.0, 1.0)}
    # anchored at its b exposure (a day later), u1's window [T0 + 1 d, T0 + 8 d) holds none of its plays
    assert cells[("b", "a")] == {("plays", "c", "t"): Cell(1, 0.0, 0.0), ("plays", "t", "c"): Cell(1, 1.0, 1.0)}
