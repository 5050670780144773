"""The evaluation gate: may a variant's policy serve, given its off-policy evaluation?

For each reward (``short_term``: plays per decision; ``long_term``: the surrogate's
predicted long-term value per decision) the candidate policy and the control's policy
are both estimated on the same logged decisions (IPS, SNIPS, DR; ``experiments.ope``).
The candidate **fails** when, on some reward,

- the method the rule judges on (DR by default) predicts harm: the candidate's upper
  confidence bound lies below the control's estimate by more than ``margin`` (relative),
  i.e. the log is confident that the candidate is worse; or
- the log cannot tell: the candidate's effective sample size is below ``min_ess``
  (its interval would not be worth its width).

Otherwise it passes. The gate is a guard against serving a policy the data already
condemns, not a proof that it wins: that is the A/B test's job, and the calibration
record compares the two afterwards.

>>> from experiments.ope.estimators import Estimate
>>> good = {"dr": Estimate("dr", 0.8, 0.01, 0.78, 0.82, 0.95, 1000, 500.0, 2.0)}
>>> bad = {"dr": Estimate("dr", 0.3, 0.01, 0.28, 0.32, 0.95, 1000, 500.0, 2.0)}
>>> judge({"short_term": bad}, {"short_term": good}, GateRule())
(False, ('short_term: dr predicts harm: upper bound 0.32 < control 0.8',))
>>> judge({"short_term": good}, {"short_term": bad}, GateRule())
(True, ())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from experiments.ope.errors import GateRefused
from experiments.ope.estimators import Estimate
from experiments.spec import Evaluation, ExperimentSpec
from experiments.surfaces import PolicyChoice


@dataclass(frozen=True, slots=True)
class GateRule:
    method: str = "dr"
    margin: float = 0.0  # relative harm tolerated (0.01: up to 1 % below the control)
    min_ess: float = 50.0

    def __post_init__(self) -> None:
        if self.method not in ("ips", "snips", "dr"):
            raise ValueError(f"method: {self.method!r} is not ips, snips or dr")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin: {self.margin!r} must be in [0, 1)")
        if not self.min_ess >= 0.0:
            raise ValueError(f"min_ess: {self.min_ess!r} must be >= 0")


def judge(
    candidate: Mapping[str, Mapping[str, Estimate]], baseline: Mapping[str, Mapping[str, Estimate]], rule: GateRule,
) -> tuple[bool, tuple[str, ...]]:
    """``(passed, reasons)``: the candidate's estimates per reward and method against the control's."""
    reasons: list[str] = []
    for reward in sorted(candidate):
        mine, theirs = candidate[reward][rule.method], baseline[reward][rule.method]
        if mine.ess < rule.min_ess:
            reasons.append(f"{reward}: effective sample size {mine.ess:.3g} < {rule.min_ess:g}")
            continue
        floor = theirs.value - rule.margin * abs(theirs.value)
        if mine.ci_high < floor:
            reasons.append(f"{reward}: {rule.method} predicts harm: upper bound {mine.ci_high:.3g} < control "
                           f"{theirs.value:.3g}" + (f" - {rule.margin:.0%}" if rule.margin else ""))
    return not reasons, tuple(reasons)


def gated_variants(spec: ExperimentSpec) -> dict[str, PolicyChoice]:
    """The variants that serve a policy other than the control's: those the gate evaluates."""
    control = spec.variant(spec.control)
    baseline = control.ranker if control is not None else None
    return {v.name: v.ranker for v in spec.variants
            if v.name != spec.control and v.ranker is not None and v.ranker != baseline}


def carry_evaluation(
    current: ExperimentSpec | None, proposed: ExperimentSpec, *, no_gate: bool, who: str, at: int,
) -> ExperimentSpec:
    """``proposed`` with the gate's record where the evaluation cannot run (the console's apply:
    OPE reads the logged decisions and the surrogate, which ``tandem experiments apply`` does).

    A spec that gates nothing passes as it is. A new version whose gated variants are the current
    version's keeps the current record (a record in the body is never trusted: it could claim a pass).
    Otherwise only ``no_gate`` lets it through, recorded as ``skipped`` by ``who``; else ``GateRefused``."""
    gated = gated_variants(proposed)
    if not gated:
        return proposed
    if current is not None and current.evaluation is not None and gated_variants(current) == gated:
        return proposed.model_copy(update={"evaluation": current.evaluation})
    if no_gate:
        return proposed.model_copy(update={"evaluation": Evaluation(gate="skipped", who=who, at=at)})
    names = ", ".join(f"variants.{name} ({choice.policy})" for name, choice in gated.items())
    raise GateRefused(f"{proposed.id}: {names} serve another policy than the control: run the evaluation gate "
                      f"with `tandem experiments apply FILE --surrogate F`, or apply with no_gate (recorded)")

