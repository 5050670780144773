"""The true value of every metric of the demo spec, per variant, from the simulator's own model.

What "true" means here: for each exposed user, the **expected value of the metric under the
model, given the sessions that happened and the arms that were served** — the outcome noise
(play or skip, durations, how many organic plays, and for retention the final coin flip) is
removed, the realized path that led to it is kept:

- ``plays_7d``: over recommendations served in ``[0, 7 d)`` after first exposure, the sum of
  their play probabilities, plus the expected number of organic plays of every session there;
- ``ms_played_7d``: the same with expected durations (a skip's expected length when skipped);
- ``skip_rate_7d`` (ratio of sums): expected skips over expected plays + skips, summed over the
  variant's users first, as the report's ratio metric does;
- ``retention_d7``: the probability that the user is active in ``[7 d, 8 d)``, i.e. that at
  least one of the possible sessions there happens: ``1 - Π (1 - p)``, each ``p`` the return
  probability the model used given the user's discovery of the 7 days before it.

Averaged over the variant's users this is the quantity the report estimates, conditioned on
which users landed where and what they were served; the report's intervals should cover the
treatment − control differences (absolute and relative). The sample ratio's truth is the
spec's weights. ``variants[v]["decision"]`` is what a perfect report would say of variant ``v``
against the control: ``do_not_ship`` when a success metric is truly worse or a guardrail is
truly beyond its margin, ``ship`` when a success metric is truly better and every guardrail
within its margin, else ``inconclusive``. ``decision`` combines them as the report's rule does
(``experiments.stats.decision.decide``): ``ship`` when some variant ships, ``do_not_ship``
when every variant is ``do_not_ship``, else ``inconclusive``; with one treatment it is that
variant's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from experiments.spec import ExperimentSpec
from infra.simulation.model import DAY_MS, Expected, Slot


class UserHistory(Protocol):
    user_id: str
    first_exposures: dict[str, tuple[int, str]]  # experiment -> (ts, variant)
    expected: list[Expected]
    slots: list[Slot]


def user_values(user: UserHistory, exposed_at: int) -> dict[str, float]:
    """One exposed user's expected ``plays``, ``skips``, ``ms_played`` in [0, 7 d) and ``active`` in [7 d, 8 d)
    after the first exposure at ``exposed_at``."""
    lo, hi = exposed_at, exposed_at + 7 * DAY_MS
    inside = [e for e in user.expected if lo <= e.ts < hi]
    inactive = 1.0
    for slot in user.slots:
        if hi <= slot.ts < hi + DAY_MS:
            inactive *= 1.0 - slot.p_active
    return {
        "plays": sum(e.plays for e in inside),
        "skips": sum(e.skips for e in inside),
        "ms_played": sum(e.ms_played for e in inside),
        "active": 1.0 - inactive,
        "genres_served": float(len({e.arm for e in inside if e.arm is not None})),
    }


def _metric_value(kind: str, name: str, rows: Sequence[dict[str, float]]) -> float:
    n = len(rows)
    if n == 0:
        return float("nan")
    if name == "skip_rate_7d":
        skips = sum(r["skips"] for r in rows)
        total = skips + sum(r["plays"] for r in rows)
        return skips / total if total else float("nan")
    key = {"plays_7d": "plays", "ms_played_7d": "ms_played", "retention_d7": "active"}[name]
    return sum(r[key] for r in rows) / n


SUPPORTED = ("plays_7d", "ms_played_7d", "retention_d7", "skip_rate_7d")


def compute_truth(users: Iterable[UserHistory], spec: ExperimentSpec) -> dict[str, Any]:
    """Per-variant true means, treatment − control effects and the true decision (see module doc)."""
    by_variant: dict[str, list[dict[str, float]]] = {v.name: [] for v in spec.variants}
    for user in users:
        first = user.first_exposures.get(spec.id)
        if first is not None and first[1] in by_variant:
            by_variant[first[1]].append(user_values(user, first[0]))
    control = spec.control
    metrics: dict[str, Any] = {}
    verdicts: dict[str, list[str]] = {v: [] for v in by_variant if v != control}
    for metric in spec.metrics:
        if metric.name not in SUPPORTED:
            continue
        means = {v: _metric_value(metric.kind, metric.name, rows) for v, rows in by_variant.items()}
        effects = {}
        for variant, value in means.items():
            if variant == control:
                continue
            absolute = value - means[control]
            relative = absolute / means[control] if means[control] else float("nan")
            good = relative if metric.direction == "increase" else -relative
            if metric.role == "guardrail":
                verdict = "worse" if good < -(metric.margin or 0.0) else "within_margin"
            else:
                verdict = "better" if good > 0 else "worse"
            effects[variant] = {"absolute": absolute, "relative": relative, "verdict": verdict}
            verdicts[variant].append(verdict)
        metrics[metric.name] = {"role": metric.role, "means": means, "effects": effects,
                                "margin": metric.margin}
    decisions = {variant: _variant_decision(found) for variant, found in verdicts.items()}
    total = sum(len(rows) for rows in by_variant.values())
    return {
        "experiment": spec.id,
        "kind": spec.kind,
        "definition": "expected metric under the model given realized sessions and served arms",
        "units": {v: len(rows) for v, rows in by_variant.items()},
        "srm": {"expected_shares": {v.name: v.weight for v in spec.variants},
                "observed_shares": {v: (len(rows) / total if total else float("nan"))
                                    for v, rows in by_variant.items()}},
        "metrics": metrics,
        "variants": {variant: {"decision": decision} for variant, decision in decisions.items()},
        "decision": _combined(list(decisions.values())),
        # the mechanism, not a metric of the spec: distinct genres recommended in [0, 7 d)
        "genres_served_7d": {v: (sum(r["genres_served"] for r in rows) / len(rows) if rows else float("nan"))
                             for v, rows in by_variant.items()},
    }


def _variant_decision(verdicts: list[str]) -> str:
    if "worse" in verdicts:
        return "do_not_ship"
    if "better" in verdicts:
        return "ship"
    return "inconclusive"


def _combined(decisions: list[str]) -> str:
    """The experiment's decision from its variants', as the report combines them."""
    if "ship" in decisions:
        return "ship"
    if decisions and all(d == "do_not_ship" for d in decisions):
        return "do_not_ship"
    return "inconclusive"


def write_truth(path: str | Path, truth: dict[str, Any]) -> Path:
    """Write the truth as indented JSON (NaN as null) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(truth, indent=2, sort_keys=True, default=str).replace("NaN", "null")
    path.write_text(text + "\n", encoding="utf-8")
    return path
