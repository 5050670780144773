"""Helpers that build engine inputs from simulated raw rows (imported by the stats tests)."""

import numpy as np


def mean_variant(name, x, pre=None):
    out = {"name": name, "n": int(len(x)), "sum": float(x.sum()), "sum_sq": float((x * x).sum())}
    if pre is not None:
        out.update(pre_sum=float(pre.sum()), pre_sum_sq=float((pre * pre).sum()), pre_cross_sum=float((x * pre).sum()))
    return out


def simulated_input(*, lifts, n=4000, seed=0, guardrail_lift=None, correction="holm", margin=0.02,
                    guardrail_direction="increase"):
    """A mean success metric with ``lifts[variant]`` (relative) and a mean guardrail."""
    rng = np.random.default_rng(seed)
    guardrail_lift = guardrail_lift or {}
    success, guard = [], []
    for name, lift in lifts.items():
        success.append(mean_variant(name, rng.gamma(2.0, 10.0, n) * (1 + lift)))
        guard.append(mean_variant(name, rng.normal(100.0, 20.0, n) * (1 + guardrail_lift.get(name, 0.0))))
    return {
        "alpha": 0.05, "control": "control", "correction": correction,
        "metrics": [
            {"name": "minutes", "kind": "mean", "role": "success", "variants": success},
            {"name": "sessions", "kind": "mean", "role": "guardrail", "direction": guardrail_direction,
             "non_inferiority_margin": margin, "variants": guard},
        ],
    }
