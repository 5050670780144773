"""The decision rule: ship, do not ship, or keep running (inconclusive), each with its reasons.

Two rules (the input's ``decision_rule``):

**risk_aware** (default; Schultzberg, Ankargren and Frånberg, "Risk-aware product decisions
in A/B tests with multiple metrics", 2024, as spotify-confidence implements it). Each
comparison takes part in up to two tests:

* success metrics: a one-sided superiority test in the metric's good direction, corrected
  (``correction``) over the success comparisons only, at ``alpha``;
* guardrails with a margin: a one-sided non-inferiority test at ``alpha`` each, uncorrected
  (the guardrails form an intersection-union test: all must pass, so no correction is due);
* every metric: a one-sided deterioration test (is it significantly worse than zero?),
  corrected over all comparisons at ``deterioration_alpha`` (default ``alpha``).

A variant ships when at least one success metric is significantly better, every guardrail
with a margin is significantly non-inferior, no metric has significantly deteriorated and
the quality checks pass (no sample ratio mismatch, no failed health check). It is
``do_not_ship`` when a metric has deteriorated (or a guardrail's interval lies entirely past
its margin), otherwise ``inconclusive``. A/A false ship rate <= alpha; the sample size is
planned so the whole rule has the target power (:mod:`.power`).

**all_metrics_corrected** (tandem's earlier rule): success metrics and guardrails without a
margin get two-sided superiority tests, guardrails with a margin the non-inferiority test, and
the correction runs over all of them together ("significant" means adjusted p <= alpha):

1. **SRM blocks everything.** If the sample ratio mismatch check fails (p < 0.001 by
   default) the verdict is ``inconclusive`` for every variant: the split is not what was
   configured, so assignment or logging is broken and no metric can be trusted. (So does
   any failed health check, under both rules.)
2. **do_not_ship** when any metric is significantly worse: a success metric, or a
   guardrail without a margin, whose two-sided test is significant in the bad direction
   (``direction`` says whether higher or lower is better); or a guardrail with a margin
   whose interval lies entirely beyond the margin on the bad side.
3. **ship** when at least one success metric improves significantly, every guardrail
   with a margin has shown non-inferiority (its one-sided test is significant) and no
   guardrail lacks data.
4. Otherwise **inconclusive** (keep running): no success metric has improved yet, or a
   guardrail's non-inferiority is not shown yet.

Across variants: ``ship`` when some variant ships (the reasons name it), ``do_not_ship``
when every variant is ``do_not_ship``, otherwise ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.stats.results import Decision, VariantDecision


@dataclass(frozen=True)
class Finding:
    """One comparison, as the decision rule sees it."""

    metric: str
    variant: str
    role: str  # success | guardrail
    test: str  # superiority | non_inferiority | insufficient_data
    significant: bool = False
    good_direction: bool = False  # the estimate points the good way
    beyond_margin: bool = False  # non-inferiority: interval entirely past the margin
    margin: float | None = None
    adjusted_p: float | None = None
    deteriorated: bool = False  # risk_aware: its deterioration test rejected
    deterioration_p: float | None = None  # ... with this adjusted p-value

    @property
    def worse(self) -> bool:
        if self.deteriorated:
            return True
        if self.test == "superiority":
            return self.significant and not self.good_direction
        return self.test == "non_inferiority" and self.beyond_margin

    @property
    def improved(self) -> bool:
        return self.role == "success" and self.test == "superiority" and self.significant and self.good_direction


def _p(f: Finding) -> str:
    return "n/a" if f.adjusted_p is None else f"{f.adjusted_p:.3g}"


def decide_variant(findings: list[Finding], *, srm_passed: bool, srm_reason: str = "",
                   blocked_by: tuple[str, ...] = ()) -> VariantDecision:
    """Verdict and reasons for one treatment variant (``blocked_by``: failed quality checks)."""
    if not srm_passed or blocked_by:
        return VariantDecision("inconclusive", _blockers(srm_passed, srm_reason, blocked_by))
    worse = [f for f in findings if f.worse]
    if worse:
        reasons = []
        for f in worse:
            if f.deteriorated:
                p = "n/a" if f.deterioration_p is None else f"{f.deterioration_p:.3g}"
                reasons.append(f"{f.role} metric {f.metric!r} has significantly deteriorated (adjusted p={p})")
            elif f.test == "non_inferiority":
                reasons.append(f"guardrail {f.metric!r} is significantly worse than its {f.margin:.2%} margin")
            else:
                reasons.append(f"{f.role} metric {f.metric!r} is significantly worse (adjusted p={_p(f)})")
        return VariantDecision("do_not_ship", tuple(reasons))
    improved = [f for f in findings if f.improved]
    pending = [f for f in findings if f.test == "non_inferiority" and not f.significant]
    thin = [f for f in findings if f.role == "guardrail" and f.test == "insufficient_data"]
    blockers = [
        f"guardrail {f.metric!r}: non-inferiority within {f.margin:.2%} not shown yet (adjusted p={_p(f)})"
        for f in pending
    ] + [f"guardrail {f.metric!r}: not enough data" for f in thin]
    if improved and not blockers:
        ok = [f"success metric {f.metric!r} improved significantly (adjusted p={_p(f)})" for f in improved]
        ni = [f"guardrail {f.metric!r} is non-inferior within {f.margin:.2%}" for f in findings
              if f.test == "non_inferiority"]
        return VariantDecision("ship", (*ok, *ni, "no sample ratio mismatch"))
    reasons = [] if improved else ["no success metric improved significantly yet"]
    return VariantDecision("inconclusive", (*reasons, *blockers))


def _blockers(srm_passed: bool, srm_reason: str, blocked_by: tuple[str, ...]) -> tuple[str, ...]:
    srm = () if srm_passed else (srm_reason or "sample ratio mismatch",)
    return (*srm, *blocked_by)


def decide(findings: list[Finding], *, variants: list[str], srm_passed: bool, srm_reason: str = "",
           blocked_by: tuple[str, ...] = ()) -> Decision:
    """Overall verdict plus one verdict per treatment variant.

    >>> f = [Finding("minutes", "b", "success", "superiority", significant=True, good_direction=True)]
    >>> decide(f, variants=["b"], srm_passed=True).verdict
    'ship'
    >>> decide(f, variants=["b"], srm_passed=False, srm_reason="SRM").verdict
    'inconclusive'
    """
    per = {
        v: decide_variant([f for f in findings if f.variant == v], srm_passed=srm_passed, srm_reason=srm_reason,
                          blocked_by=blocked_by)
        for v in variants
    }
    if not srm_passed or blocked_by:
        return Decision("inconclusive", _blockers(srm_passed, srm_reason, blocked_by), per)
    shipped = [v for v in variants if per[v].verdict == "ship"]
    if shipped:
        verdict = "ship"
    elif variants and all(per[v].verdict == "do_not_ship" for v in variants):
        verdict = "do_not_ship"
    else:
        verdict = "inconclusive"
    order = shipped + [v for v in variants if v not in shipped]
    reasons = tuple(f"{v} ({per[v].verdict}): {r}" for v in order for r in per[v].reasons)
    return Decision(verdict, reasons, per)
