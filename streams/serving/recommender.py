"""One recommendation: the user's composed parameters, the ranker, and the records that log it.

Plain logic, no HTTP and no Kafka. Given the user, the surface, the user's features and
the candidate arms:

1. ``experiments.assignment.compose`` overlays the surface's defaults with the variants of
   every running experiment the user is in (at the request's event time); a user held out
   by the surface's holdout gets the defaults;
2. the ``ranker`` parameter names the policy, which chooses among the candidates with the
   features as context and returns the arm with its exact probability (the propensity); a
   ranker that cannot be served falls back to the surface's default, and the experiment
   that set it is not exposed (its treatment was not applied);
3. the ``Decision`` records the context, propensity, policy version, candidates and the
   user's assignments on the surface; one ``Exposure`` is made for each experiment whose
   parameter was read to build the response (and for the surface's holdout), with the
   parameters it set (one for every request: the aggregator keeps the first).

>>> from streams.serving.live_config import LiveConfig
>>> rec = Recommender(live=LiveConfig(), arms=("jazz", "rock"))
>>> out = rec.recommend("u1", features={"plays_1h": 0}, ts_ms=1767225600000)
>>> out.decision.policy, out.decision.propensity, out.exposures, out.params["num_items"]
('popularity', 0.5, (), 3)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from experiments.assignment import Composition, compose, surface_values
from experiments.spec import DEFAULT_SURFACE
from experiments.surfaces import RANKER, PolicyChoice, Surface, load_surfaces
from streams.events import Decision, Exposure, StickyAssignment, new_id
from streams.policies import Policy
from streams.serving.errors import InvalidRequest
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
    surface: str
    params: dict[str, Any]  # every parameter of the surface as served (JSON values)
    experiment: str | None  # the experiment that set the ranker, None for the surface's default
    variant: str | None
    sticky: tuple[StickyAssignment, ...] = ()  # bandit experiments the user joined with this request

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
            "surface": self.surface,
            "params": self.params,
            "experiment": self.experiment,
            "variant": self.variant,
            "exposed": {e.experiment: e.variant for e in self.exposures},
            "assignments": d.assignments,
            "ts": d.ts,
        }


class Recommender:
    """Serves a surface's composed parameters and the ranker's choice; see the module doc."""

    def __init__(
        self, *, live: LiveConfig, arms: Sequence[str], default_policy: str = "popularity",
        surfaces: Mapping[str, Surface] | None = None,
    ) -> None:
        self.live = live
        self.arms = tuple(arms)
        self.default_policy = default_policy
        self.surfaces = dict(surfaces) if surfaces is not None else load_surfaces()
        live.policy(default_policy)  # fails now, not on the first request, if the name is unknown
        self.unresolved: Counter[str] = Counter()  # rankers that could not be served, by policy name
        self.conflicts: Counter[str] = Counter()  # experiments whose parameter another one already set

    def _ranker(self, composition: Composition, surface: Surface) -> tuple[Policy, str]:
        choice = composition.read(RANKER) if RANKER in composition.values else None
        if isinstance(choice, PolicyChoice) and self.live.resolvable(choice.policy):
            return self.live.policy(choice.policy, choice.params), choice.policy
        if isinstance(choice, PolicyChoice):
            self.unresolved[choice.policy] += 1
            logger.warning("surface %s: policy %r cannot be served", surface.name, choice.policy)
            composition.sources.pop(RANKER, None)  # its treatment is not applied: no exposure for it
        default = surface.parameter(RANKER)
        fallback = default.default if default is not None else None
        if isinstance(fallback, PolicyChoice) and fallback != choice and self.live.resolvable(fallback.policy):
            composition.values[RANKER] = fallback
            return self.live.policy(fallback.policy, fallback.params), fallback.policy
        composition.values[RANKER] = PolicyChoice(policy=self.default_policy)
        return self.live.policy(self.default_policy), self.default_policy

    def recommend(
        self,
        user_id: str,
        *,
        features: Mapping[str, int | float],
        ts_ms: int,
        candidates: Sequence[str] | None = None,
        surface: str = DEFAULT_SURFACE,
    ) -> Recommendation:
        layout = self.surfaces.get(surface)
        if layout is None:
            raise InvalidRequest(f"surface: unknown surface {surface!r} (one of {', '.join(sorted(self.surfaces))})")
        arms = list(candidates) if candidates else list(self.arms)
        composition = compose(layout, self.live.index(), user_id, at_ms=ts_ms, sticky=self.live.sticky.get)
        for experiment, variant in composition.new_sticky:
            self.live.sticky.remember(experiment, user_id, variant)
        for experiment in composition.conflicts:
            self.conflicts[experiment] += 1
        policy, name = self._ranker(composition, layout)
        context = {feature: float(value) for feature, value in features.items()}
        choice = policy.choose(context, arms)
        params = {p.name: composition.read(p.name) for p in layout.parameters if p.name != RANKER}
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
            assignments=composition.assignments,
        )
        exposures = tuple(
            Exposure(
                exposure_id=f"{decision_id}:{experiment}",
                experiment=experiment,
                variant=variant,
                user_id=user_id,
                ts=ts_ms,
                surface=layout.name,
                params=composition.parameters_set(experiment),
            )
            for experiment, variant in composition.used().items()
        )
        sticky = tuple(
            StickyAssignment(assignment_id=f"{decision_id}:{experiment}", experiment=experiment, variant=variant,
                             user_id=user_id, ts=ts_ms)
            for experiment, variant in composition.new_sticky
        )
        ranker_source = composition.sources.get(RANKER)
        return Recommendation(
            decision, exposures, layout.name, surface_values({RANKER: composition.values[RANKER], **params}),
            ranker_source[0] if ranker_source else None, ranker_source[1] if ranker_source else None, sticky,
        )
