"""What a spec must pass before it is published next to the experiments already live.

``admit`` is called by ``tandem experiments apply`` (and any other writer of the experiments
topic); serving and the aggregator call ``check_against_surfaces`` on every spec record they
read, so a record published straight to the topic is refused there too (they keep the last good
version). Every error names the field. The aggregator's own limits (``check_foldable``: the
longest pre-period it keeps) are checked here with its defaults, and again by the aggregator
with its configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from experiments.aggregation.foldable import check_foldable
from experiments.assignment import check_holdouts, check_layers, check_parameters
from experiments.spec import ExperimentSpec
from experiments.surfaces import Surface, check_against_surfaces


def admit(spec: ExperimentSpec, *, live: Iterable[ExperimentSpec], surfaces: Mapping[str, Surface]) -> None:
    """Raise ``InvalidSpec`` (or its ``SpecConflict``) if ``spec`` may not join ``live``.

    ``live`` are the specs on the experiments topic; a spec of the same id is the one ``spec``
    replaces. Checked: the surface and its parameters, disjoint layer ranges, one owner per
    parameter and user, one holdout per surface, what the aggregator can fold.
    """
    check_foldable(spec)
    check_against_surfaces(spec, surfaces)
    together = [s for s in live if s.id != spec.id] + [spec]
    check_layers(together)
    check_parameters(together)
    check_holdouts(together)
