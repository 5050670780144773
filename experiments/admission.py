"""What a spec must pass before it is published next to the experiments already live.

``admit`` is called by ``tandem experiments apply`` (and any other writer of the experiments
topic); serving and the aggregator call ``check_against_surfaces`` on every spec record they
read, so a record published straight to the topic is refused there too (they keep the last good
version). Every error names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from experiments.assignment import check_holdouts, check_layers, check_parameters
from experiments.errors import InvalidSpec
from experiments.spec import ExperimentSpec
from experiments.surfaces import Surface


def check_against_surfaces(spec: ExperimentSpec, surfaces: Mapping[str, Surface]) -> None:
    """The spec's surface exists and every parameter its variants set is one of it, of the right type."""
    surface = surfaces.get(spec.surface)
    if surface is None:
        raise InvalidSpec(f"experiment spec {spec.id!r}: surface: unknown surface {spec.surface!r} "
                          f"(one of {', '.join(sorted(surfaces))})")
    for i, variant in enumerate(spec.variants):
        for name, value in variant.params.items():
            parameter = surface.parameter(name)
            where = f"variants[{i}].params.{name}"
            if parameter is None:
                known = ", ".join(p.name for p in surface.parameters)
                raise InvalidSpec(f"experiment spec {spec.id!r}: {where}: not a parameter of surface "
                                  f"{surface.name!r} ({known})")
            try:
                parameter.check(value.model_dump() if hasattr(value, "model_dump") else value)
            except ValueError as exc:
                raise InvalidSpec(f"experiment spec {spec.id!r}: {where}: {exc}") from None


def admit(spec: ExperimentSpec, *, live: Iterable[ExperimentSpec], surfaces: Mapping[str, Surface]) -> None:
    """Raise ``InvalidSpec`` (or its ``SpecConflict``) if ``spec`` may not join ``live``.

    ``live`` are the specs on the experiments topic; a spec of the same id is the one ``spec``
    replaces. Checked: the surface and its parameters, disjoint layer ranges, one owner per
    parameter and user, one holdout per surface.
    """
    check_against_surfaces(spec, surfaces)
    together = [s for s in live if s.id != spec.id] + [spec]
    check_layers(together)
    check_parameters(together)
    check_holdouts(together)
