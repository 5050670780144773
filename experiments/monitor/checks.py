"""The checks run on every metric update of a live experiment, and the verdict: keep running or stop.

Each check is valid under continuous monitoring, so looking after every update does not
raise the false-stop rate past its bound:

* ``srm``: the anytime-valid sample ratio test (:func:`experiments.monitor.srm.sequential_srm`)
  of the exposed users against the spec's weights; fails below ``SRM_THRESHOLD``;
* ``guardrails``: each guardrail compared with the control by the engine's ``always_valid``
  sequential test (two-sided, no margin: harm, not non-inferiority, stops an experiment),
  Holm-corrected across guardrails and variants at the spec's ``alpha``; fails when one is
  significantly worse. An A/A experiment is stopped with probability at most ``alpha``;
* ``late_records``, ``multi_variant_users``, ``data``: warnings owners read, never a stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from experiments.monitor.srm import sequential_srm
from experiments.report.owner import report_spec
from experiments.report.render import build_report
from experiments.spec import ExperimentSpec
from experiments.stats import Result, StatsError

SRM_THRESHOLD = 0.001
#: The always-valid mixture is tightest around this many users in a comparison.
TUNING_N = 2_000


@dataclass(frozen=True)
class HealthCheck(Result):
    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


@dataclass(frozen=True)
class Verdict(Result):
    """Whether to stop, why (empty when not), and every check."""

    stop: bool
    reason: str
    checks: tuple[HealthCheck, ...]


def srm_check(spec: ExperimentSpec, records: Sequence[Mapping[str, Any]]) -> HealthCheck:
    """The one function behind the SRM check: swap the test here, every caller follows.

    The aggregator publishes a record for every variant, exposed or not, so a variant without one
    has not been read yet (its records come in another fetch): judging it as 0 exposed stopped a
    healthy experiment between the two fetches of one update."""
    exposed = {v.name: 0 for v in spec.variants}
    reported: set[str] = set()
    for record in records:
        if record.get("variant") in exposed:
            reported.add(record["variant"])
            exposed[record["variant"]] = max(exposed[record["variant"]], int(record.get("exposed", 0)))
    unread = [name for name in exposed if name not in reported]
    if reported and unread:
        return HealthCheck("srm", "ok", f"waiting for the records of {', '.join(unread)}")
    result = sequential_srm(exposed, {v.name: v.weight for v in spec.variants}, threshold=SRM_THRESHOLD)
    split = ", ".join(f"{k} {n}" for k, n in exposed.items())
    if result.p_value is None:
        return HealthCheck("srm", "ok", "no users yet")
    if result.passed:
        return HealthCheck("srm", "ok", f"split {split} matches the weights (anytime-valid p={result.p_value:.3g})")
    return HealthCheck("srm", "fail", f"sample ratio mismatch: split {split} does not match the weights "
                                      f"(anytime-valid p={result.p_value:.3g} < {SRM_THRESHOLD})")


def guardrail_check(spec: ExperimentSpec, records: Sequence[Mapping[str, Any]]) -> HealthCheck:
    guardrails = [m for m in report_spec(spec)["metrics"] if m["role"] == "guardrail"]
    if not guardrails:
        return HealthCheck("guardrails", "ok", "the spec has no guardrail")
    plan = {**report_spec(spec), "metrics": [{**m, "non_inferiority_margin": None} for m in guardrails],
            "sequential": {"method": "always_valid", "tuning_n": TUNING_N}}
    try:
        analysis = build_report(spec=plan, records=[dict(r) for r in records]).analysis
    except StatsError as exc:
        return HealthCheck("guardrails", "warn", f"not testable yet: {exc}")
    worse = [
        f"{metric.name} is significantly worse in {c.variant} (relative {_pct(c.relative.estimate)}, "
        f"always-valid interval [{_pct(c.relative.ci_low)}, {_pct(c.relative.ci_high)}], "
        f"adjusted p={c.adjusted_p_value:.3g})"
        for metric in analysis.metrics for c in metric.comparisons if c.status == "worse"
    ]
    if worse:
        return HealthCheck("guardrails", "fail", "; ".join(worse))
    return HealthCheck("guardrails", "ok", f"no guardrail significantly worse at alpha {spec.alpha} "
                                           "(always-valid, checked on every update)")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def warnings(spec: ExperimentSpec, records: Sequence[Mapping[str, Any]]) -> tuple[HealthCheck, ...]:
    late = sum(int(r.get("late_records", 0)) for r in records)
    multi = max((int(r.get("multi_variant_users", 0)) for r in records), default=0)
    thin = sorted({f"{r['metric']}/{r['variant']}" for r in records if int(r.get("n", 0)) < 2})
    missing = len(spec.variants) * len(spec.stream_metrics) - len(records)  # batch-only metrics have no record
    return (
        HealthCheck("late_records", "ok" if late == 0 else "warn",
                    "no record arrived after its window closed" if late == 0 else
                    f"{late} records arrived after their window closed (counted, not merged)"),
        HealthCheck("multi_variant_users", "ok" if multi == 0 else "warn",
                    "every user saw one variant" if multi == 0 else f"{multi} users were exposed to several variants"),
        HealthCheck("data", "ok" if not thin and missing <= 0 else "warn",
                    "every metric has closed windows in every variant" if not thin and missing <= 0 else
                    f"waiting for closed windows: {', '.join(thin) or f'{missing} metric/variant pairs'}"),
    )


def evaluate(spec: ExperimentSpec, records: Sequence[Mapping[str, Any]]) -> Verdict:
    """Every check on the combined newest records of one experiment, and whether it must stop."""
    checks = (srm_check(spec, records), guardrail_check(spec, records), *warnings(spec, records))
    failed = [c for c in checks if c.status == "fail"]
    reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    return Verdict(stop=bool(failed), reason=f"automatic stop: {reason}" if failed else "", checks=checks)
