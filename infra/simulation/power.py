"""Whether a simulated run has enough users for the spec's guardrails to say anything.

A guardrail with a relative margin is shown non-inferior when its interval clears the
margin; with too few users the interval is wider than the margin and the verdict is noise
(300 users once reported DO NOT SHIP at -10.9 % where the truth was -0.9 %). For each
proportion guardrail the users needed per arm to show non-inferiority at the spec's
one-sided alpha with 80 % power when the truth is no change come from the engine's power
calculator (``experiments.stats.proportion_sample_size_per_arm``), with the control's
baseline from a small offline pilot of the same model; the total adds the holdouts and the
smallest variant's weight.

>>> from experiments.spec import load_spec, DEMO_SPEC_PATH
>>> needs = required_users(load_spec(DEMO_SPEC_PATH), baselines={"retention_d7": 0.86}, held_out=0.05)
>>> [(n.metric, n.per_arm > 10_000, n.users > 2 * n.per_arm) for n in needs]
[('retention_d7', True, True)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from experiments.spec import ExperimentSpec
from experiments.stats import proportion_sample_size_per_arm

POWER = 0.8
PILOT_USERS = 300


@dataclass(frozen=True)
class Requirement:
    metric: str
    baseline: float
    margin: float
    per_arm: int  # users per arm
    users: int  # simulated users, with the holdout and the smallest variant's share


def required_users(spec: ExperimentSpec, *, baselines: Mapping[str, float], power: float = POWER,
                   held_out: float = 0.0) -> list[Requirement]:
    """What each proportion guardrail with a margin and a known baseline needs; ``held_out`` is the
    share of users the surface's holdout keeps out of every experiment."""
    holdout = spec.layer.holdout if spec.layer is not None else 0.0
    share = min(v.weight for v in spec.variants) * (1.0 - holdout) * (1.0 - held_out)
    out = []
    for metric in spec.metrics:
        baseline = baselines.get(metric.name)
        if metric.role != "guardrail" or metric.kind != "proportion" or metric.margin is None or not baseline:
            continue
        worse = -metric.margin if metric.direction == "increase" else metric.margin
        if not 0.0 < baseline * (1.0 + worse) < 1.0:
            continue
        # One-sided at alpha: the two-sided formula at 2 alpha.
        per_arm = math.ceil(proportion_sample_size_per_arm(baseline=baseline, relative_mde=worse,
                                                           alpha=2 * spec.alpha, power=power))
        out.append(Requirement(metric.name, baseline, metric.margin, per_arm, math.ceil(per_arm / share)))
    return out


def power_warning(spec: ExperimentSpec, *, users: int, baselines: Mapping[str, float],
                  held_out: float = 0.0) -> str | None:
    """A warning naming each guardrail that ``users`` simulated users cannot resolve, or None."""
    short = [need for need in required_users(spec, baselines=baselines, held_out=held_out) if users < need.users]
    if not short:
        return None
    lines = [f"WARNING: {users} users are too few for this experiment's guardrails; its verdict will be noise:"]
    lines += [f"  {n.metric}: about {n.per_arm:,} users per arm ({n.users:,} simulated users) are needed to tell a "
              f"{n.margin:.0%} degradation (its margin) from none at {POWER:.0%} power "
              f"(control baseline {n.baseline:.3f})" for n in short]
    lines.append(f"  run with --users {max(n.users for n in short)} or more for a decision worth reading")
    return "\n".join(lines)


def pilot_baselines(spec: ExperimentSpec, *, seed: int, users: int = PILOT_USERS) -> dict[str, float]:
    """The control's expected metric values in a small offline run of the same model (a few seconds)."""
    from infra.simulation.offline import run_offline

    truth = run_offline(users=users, seed=seed, spec=spec).truth
    return {name: float(metric["means"][spec.control]) for name, metric in truth["metrics"].items()
            if math.isfinite(float(metric["means"][spec.control]))}
