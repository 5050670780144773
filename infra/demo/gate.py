"""The evaluation gate's prediction before the demo's ranker experiment serves.

``tandem experiments apply`` evaluates a new policy off-policy on the decisions logged so far. The
demo's broker starts empty: no decision is logged before its experiment serves. The nearest honest
source is the simulated archive of past experiments (``infra.simulation.history``), which a real
team would read from its archive: the same user model, other users and seeds.

- The **surrogate** is fitted on the archive's five past experiments, as ``python -m
  infra.simulation.history`` does (``users`` each).
- The **logged decisions** are those of one more past experiment, popularity with 20 % against
  60 % uniform exploration (every arm has a positive propensity), as serving logs them: context,
  arms, propensity, and the learner's reward (1 when the recommendation was played).
- The **policies** are evaluated as they would serve after learning from such a log: each (the
  control's and every gated variant's) is trained on the log's first half, in time order, with
  the learner's reward, and evaluated on the second half (a fresh bandit, with nothing learned,
  would be the uniform policy, which predicts nothing about the one that serves).

The rule (``experiments.ope.gate.judge``) runs as in ``apply``. Where it refuses a variant the
demo serves it anyway, so the A/B test can judge what the gate predicted: the record says
``overridden``, with each variant's reasons, and is published with the spec; the decision's
calibration record sets the prediction beside the realized effect.
"""

from __future__ import annotations

import time
from typing import Any

from experiments.ope.gate import GateRule, gated_variants
from experiments.spec import Evaluation, ExperimentSpec
from experiments.surfaces import PolicyChoice
from experiments.surrogate import fit_surrogate
from infra.cli.gate import estimate_variants
from infra.simulation.history import PAST, archive_rows, past_spec
from infra.simulation.offline import run_offline
from streams.events import Decision
from streams.policies import make_policy

#: The past experiment whose logged decisions the gate reads: popularity, 20 % against 60 % exploration.
LOGGED = ("past_logged", ("popularity", {"epsilon": 0.2}), ("popularity", {"epsilon": 0.6}))


def _played(ms: float) -> float:
    return 1.0 if ms > 0 else 0.0


def _trained(choice: PolicyChoice, train: list[tuple[Decision, float]]) -> dict[str, Any]:
    policy = make_policy(choice.policy, seed=0, **choice.params)
    policy.update_many((d.context, d.arm, reward) for d, reward in train)
    return policy.to_state()


def history_evaluation(spec: ExperimentSpec, *, users: int = 300, seed: int = 100, who: str = "demo",
                       at: int | None = None) -> Evaluation | None:
    """The gate's record for ``spec`` on the simulated archive (module doc); None when it gates nothing."""
    gated = gated_variants(spec)
    if not gated:
        return None
    surrogate = fit_surrogate(archive_rows(users=users, seed=seed))
    log = run_offline(users=users, seed=seed + len(PAST), specs=[past_spec(*LOGGED)], keep_decisions=True,
                      reward_fn=_played).decisions
    log.sort(key=lambda pair: (pair[0].ts, pair[0].decision_id))
    train, held_out = log[: len(log) // 2], log[len(log) // 2:]
    control = spec.variant(spec.control)
    choices = {**gated, **({spec.control: control.ranker} if control is not None and control.ranker else {})}
    snapshots = {choice.policy: _trained(choice, train) for choice in choices.values()}
    variants = estimate_variants(spec, pairs=held_out, snapshots=snapshots, surrogate=surrogate, rule=GateRule())
    refused = any(not v.passed for v in variants.values())
    return Evaluation(gate="overridden" if refused else "passed", who=who,
                      at=int(time.time() * 1000) if at is None else at, decisions=len(held_out),
                      surrogate=dict(surrogate.coefficients), variants=variants)
