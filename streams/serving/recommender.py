"""One recommendation: assignment, the variant's policy, and the records that log it.

Plain logic, no HTTP and no Kafka. Given the user, the user's features and the
candidate arms:

1. ``experiments.assignment.assign`` puts the user in a variant of every running
   experiment (at the request's event time); ``assignments`` keeps them all;
2. the first experiment (by id) whose variant's policy can be served decides the
   policy; a user outside every experiment (holdout, outside the layer range, or no
   experiment running) gets the default policy;
3. that policy chooses among the candidates with the features as context and
   returns the arm with its exact probability (the propensity);
4. the ``Decision`` records the context, propensity, policy version, candidates and
   assignments; an ``Exposure`` is made for the deciding experiment only, since only
   its variant's treatment was applied (one for every request: the aggregator keeps
   the first).

>>> from streams.serving.live_config import LiveConfig
>>> rec = Recommender(live=LiveConfig(), arms=("jazz", "rock"))
>>> out = rec.recommend("u1", features={"plays_1h": 0}, ts_ms=1767225600000)
>>> out.decision.policy, out.decision.propensity, out.exposures
('popularity', 0.5, ())
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from experiments.assignment import assign
from streams.events import Decision, Exposure, new_id
from streams.policies import Policy
from streams.serving.live_config import LiveConfig

logger = logging.getLogger(__name__)


class FeatureReader(Protocol):
    """What serving needs of the feature store (``feature_store.FeatureStoreClient`` is one).

    A reader may also say ``reads_in_process = True`` (a local, bounded lookup): serving
    then reads it on the event loop (``ServingConfig.feature_reads``)."""

    defaults: dict[str, int | float]

    def read(self, user_ids: Sequence[str]) -> dict[str, dict[str, int | float]]: ...


@dataclass(frozen=True, slots=True)
class Recommendation:
    decision: Decision
    exposures: tuple[Exposure, ...]
    experiment: str | None  # the experiment that decided the policy, None for the default
    variant: str | None

    def response(self) -> dict[str, Any]:
        """The JSON body answered to the client."""
        d = self.decision
        return {
            "decision_id": d.decision_id,
            "user_id": d.user_id,
            "arm": d.arm,
            "policy": d.policy,
            "version": d.policy_version,
            "propensity": d.propensity,
            "experiment": self.experiment,
            "variant": self.variant,
            "assignments": d.assignments,
            "ts": d.ts,
        }


class Recommender:
    """Chooses an arm for a user with the policy of the user's variant; see the module doc."""

    def __init__(self, *, live: LiveConfig, arms: Sequence[str], default_policy: str = "popularity") -> None:
        self.live = live
        self.arms = tuple(arms)
        self.default_policy = default_policy
        live.policy(default_policy)  # fails now, not on the first request, if the name is unknown
        self.unresolved: Counter[str] = Counter()  # variant policies that could not be served, by name

    def _policy_for(
        self, assignments: Mapping[str, str], held_assignments: Mapping[str, str]
    ) -> tuple[Policy, str, str | None, str | None]:
        for spec in self.live.specs():
            variant_name = assignments.get(spec.id)
            if variant_name is None:
                continue
            variant = spec.variant(variant_name)
            if variant is not None and self.live.resolvable(variant.policy):
                policy = self.live.policy(variant.policy, variant.policy_params)
                return policy, variant.policy, spec.id, variant_name
            if variant is not None:
                self.unresolved[variant.policy] += 1
                logger.warning("experiment %s: policy %r cannot be served", spec.id, variant.policy)
        for spec in self.live.held():  # a stopped experiment serves its control, exposing nobody
            control = spec.variant(spec.control)
            if control is not None and held_assignments.get(spec.id) and self.live.resolvable(control.policy):
                return self.live.policy(control.policy, control.policy_params), control.policy, None, None
        return self.live.policy(self.default_policy), self.default_policy, None, None

    def recommend(
        self,
        user_id: str,
        *,
        features: Mapping[str, int | float],
        ts_ms: int,
        candidates: Sequence[str] | None = None,
    ) -> Recommendation:
        arms = list(candidates) if candidates else list(self.arms)
        assignments = {}
        for spec in self.live.specs():
            variant_name = assign(spec, user_id, at_ms=ts_ms)
            if variant_name is not None:
                assignments[spec.id] = variant_name
        held = {spec.id: v for spec in self.live.held() if (v := assign(spec, user_id, at_ms=ts_ms)) is not None}
        policy, name, experiment, variant = self._policy_for(assignments, held)
        context = {feature: float(value) for feature, value in features.items()}
        choice = policy.choose(context, arms)
        decision_id = new_id()
        decision = Decision(
            decision_id=decision_id,
            user_id=user_id,
            ts=ts_ms,
            policy=name,
            policy_version=policy.version,
            arm=choice.arm,
            propensity=choice.propensity,
            arms=arms,
            context=context,
            assignments=assignments,
        )
        exposures: tuple[Exposure, ...] = ()
        if experiment is not None and variant is not None:
            exposures = (
                Exposure(
                    exposure_id=f"{decision_id}:{experiment}",
                    experiment=experiment,
                    variant=variant,
                    user_id=user_id,
                    ts=ts_ms,
                ),
            )
        return Recommendation(decision, exposures, experiment, variant)
