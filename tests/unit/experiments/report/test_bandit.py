"""A bandit's report: users grouped by the period they arrived in, effects weighted by period."""

from __future__ import annotations

import pytest

from experiments.aggregation.windows import MetricEvent
from experiments.report.bandit import bandit_report, period_of, render
from experiments.spec import parse_spec
from streams.events import Exposure

DAY = 86_400_000
T0 = 1_767_225_600_000
SPEC = parse_spec({
    "id": "mab", "salt": "mab/1", "kind": "bandit", "start": T0, "end": T0 + 30 * DAY, "control": "a",
    "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
    "allocation": {"metric": "plays", "every": "1d"},
    "periods": [{"start": T0 + DAY, "weights": {"a": 0.2, "b": 0.8}}],
    "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                 "measure": "plays", "window": {"length": "1d"}}],
})


def test_users_are_counted_in_the_period_they_arrived_and_effects_are_period_weighted():
    assert (period_of(SPEC, T0), period_of(SPEC, T0 + DAY - 1), period_of(SPEC, T0 + DAY)) == (0, 0, 1)
    exposures, events = [], []
    # period 0: 4 + 4 users, a plays 1, b plays 2; period 1: 2 + 8 users, a plays 3, b plays 3
    plan = [(0, "a", 4, 1), (0, "b", 4, 2), (1, "a", 2, 3), (1, "b", 8, 3)]
    for period, variant, users, plays in plan:
        for i in range(users):
            user = f"{variant}{period}-{i}"
            ts = T0 + period * DAY + 10 + i
            exposures.append(Exposure(exposure_id=f"x-{user}", experiment="mab", variant=variant, user_id=user, ts=ts))
            exposures.append(Exposure(exposure_id=f"y-{user}", experiment="mab", variant=variant, user_id=user,
                                      ts=ts + 5 * DAY))  # a later exposure changes nothing
            events += [MetricEvent(f"{user}-{k}", user, ts + k + 1, "play", "i", "g", 1) for k in range(plays)]
            events.append(MetricEvent(f"{user}-x", user, ts + i % 2 + 1, "skip", "i", "g", 1))
    report = bandit_report(SPEC, exposures, events, closed_upto=T0 + 10 * DAY)
    assert report.users == {"a": 6, "b": 12} and report.periods == 2
    effect = report.effects[("plays", "b")]
    # periods of 8 and 10 users: weights 8/18 and 10/18; per period b - a = 1 and 0
    assert effect.estimate == pytest.approx(8 / 18 * 1 + 10 / 18 * 0)
    assert report.srm.degrees_of_freedom == 2 and report.srm.passed  # 4/4 at 50/50, 2/8 at 20/80
    assert "period-weighted" in render(report)
