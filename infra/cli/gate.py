"""The evaluation gate of ``tandem experiments apply``: no policy serves without a passing evaluation.

For every variant that serves a policy other than its control's, the candidate and the
control's policy are evaluated off-policy (``experiments.ope``: IPS, SNIPS, DR with
intervals) on every logged decision whose reward window has closed, on two rewards:

- ``short_term``: plays credited to the decision (the learner's join, ``one_per_play``);
- ``long_term``: the surrogate's predicted long-term value of what the decision earned,
  ``coef[genres_discovered]`` if it earned a play of a genre the user had not played in
  the week (``affinity_<arm>_7d`` = 0 in the logged context) plus ``coef[plays]`` per play.

A policy is the newest snapshot of its name on the models topic when there is one (what
would serve), else a fresh one with the variant's parameters. ``experiments.ope.gate.judge``
decides; the record (``experiments.spec.Evaluation``) is published with the spec. With
``--no-gate`` nothing is evaluated and the record says ``skipped``, with who and when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from experiments.ope.errors import GateRefused, InvalidLog
from experiments.ope.estimators import Estimate, LoggedDecision, evaluate
from experiments.ope.gate import GateRule, gated_variants, judge
from experiments.spec import (
    EstimateRecord,
    Evaluation,
    ExperimentSpec,
    RewardEvaluation,
    VariantEvaluation,
)
from experiments.surfaces import PolicyChoice
from experiments.surrogate import Surrogate
from infra.cli.evaluate_policy import logged_rewards
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import MODELS
from infra.settings import Settings
from streams.events import Decision, ModelSnapshot, decode
from streams.features.config import affinity_name
from streams.policies import Policy, make_policy, policy_from_state


def long_term_value(surrogate: Surrogate, decision: Decision, plays: float) -> float:
    """The surrogate's predicted long-term value of one decision's short-term result (module doc)."""
    coefficients = surrogate.coefficients
    discovered = plays > 0 and decision.context.get(affinity_name(decision.arm), 0.0) <= 0.0
    return coefficients.get("genres_discovered", 0.0) * discovered + coefficients.get("plays", 0.0) * plays


def _policy(choice: PolicyChoice, snapshots: Mapping[str, dict[str, Any]]) -> Policy:
    state = snapshots.get(choice.policy)
    if state is not None:
        return policy_from_state(state, seed=0)
    return make_policy(choice.policy, seed=0, **choice.params)


def _snapshots(settings: Settings) -> dict[str, dict[str, Any]]:
    out = {}
    for record in newest_per_key(read_topic(settings, settings.topic(MODELS))).values():
        try:
            snapshot = decode(record.value or b"", ModelSnapshot)
        except ValueError:
            continue  # the learner and serving report unreadable snapshots; here it is simply not used
        out[snapshot.policy] = snapshot.state
    return out


def _records(estimates: Mapping[str, Estimate]) -> tuple[EstimateRecord, ...]:
    return tuple(EstimateRecord(method=e.method, value=e.value, ci_low=e.ci_low, ci_high=e.ci_high, ess=e.ess)
                 for e in estimates.values())


def estimate_variants(
    spec: ExperimentSpec, *, pairs: Sequence[tuple[Decision, float]], snapshots: Mapping[str, dict[str, Any]],
    surrogate: Surrogate, rule: GateRule,
) -> dict[str, VariantEvaluation]:
    """Each gated variant's estimates against the control's on the logged ``pairs``, and the rule's verdict;
    raises ``GateRefused`` when no off-policy evaluation is possible (e.g. no logged decisions)."""
    gated = gated_variants(spec)
    logs = {
        "short_term": [LoggedDecision(dict(d.context), tuple(d.arms), d.arm, d.propensity, r) for d, r in pairs],
        "long_term": [LoggedDecision(dict(d.context), tuple(d.arms), d.arm, d.propensity,
                                     long_term_value(surrogate, d, r)) for d, r in pairs],
    }
    control = spec.variant(spec.control)
    baseline_choice = (control.ranker if control is not None else None) or PolicyChoice(policy="popularity")
    try:
        baseline_policy = _policy(baseline_choice, snapshots)
        baseline = {reward: evaluate(log, baseline_policy.probabilities) for reward, log in logs.items()}
        variants: dict[str, VariantEvaluation] = {}
        for name, choice in gated.items():
            policy = _policy(choice, snapshots)
            mine = {reward: evaluate(log, policy.probabilities) for reward, log in logs.items()}
            passed, reasons = judge(mine, baseline, rule)
            variants[name] = VariantEvaluation(
                policy=choice.policy, passed=passed, reasons=reasons,
                rewards=tuple(RewardEvaluation(reward=reward, candidate=_records(mine[reward]),
                                               baseline=_records(baseline[reward])) for reward in logs))
    except InvalidLog as exc:
        raise GateRefused(f"{spec.id}: no off-policy evaluation possible ({exc}); serve the policy to a "
                          f"small experiment first with --no-gate (recorded)") from None
    return variants


def evaluate_spec(
    spec: ExperimentSpec, *, pairs: Sequence[tuple[Decision, float]], snapshots: Mapping[str, dict[str, Any]],
    surrogate: Surrogate, rule: GateRule, who: str, at: int,
) -> Evaluation:
    """The gate's record for ``spec`` on the logged ``pairs``; raises ``GateRefused`` when a variant fails."""
    gated = gated_variants(spec)
    variants = estimate_variants(spec, pairs=pairs, snapshots=snapshots, surrogate=surrogate, rule=rule)
    failed = {name: v.reasons for name, v in variants.items() if not v.passed}
    if failed:
        details = "; ".join(f"variants.{name} ({gated[name].policy}): {', '.join(r)}" for name, r in failed.items())
        raise GateRefused(f"{spec.id}: the evaluation gate refused it: {details}")
    return Evaluation(gate="passed", who=who, at=at, decisions=len(pairs), surrogate=dict(surrogate.coefficients),
                      variants=variants)


def gate(
    settings: Settings, spec: ExperimentSpec, *, surrogate: Surrogate | None, rule: GateRule, no_gate: bool,
    who: str, at: int,
) -> Evaluation | None:
    """The record to publish with ``spec``: None when no variant serves another policy than the control."""
    if not gated_variants(spec):
        return None
    if no_gate:
        return Evaluation(gate="skipped", who=who, at=at)
    if surrogate is None:
        raise GateRefused(f"{spec.id}: the evaluation gate needs a surrogate (--surrogate FILE, from "
                          f"`tandem experiments surrogate`), or --no-gate (recorded)")
    return evaluate_spec(spec, pairs=logged_rewards(settings), snapshots=_snapshots(settings),
                         surrogate=surrogate, rule=rule, who=who, at=at)
