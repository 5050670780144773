"""Deterministic assignment of users to experiment variants.

A pure function of (spec, user id): the same answer in every process, on every host and
in every version, because it hashes with BLAKE2b (never Python's salted ``hash()``).

Three independent hashes decide, in this order:

1. holdout: ``h("holdout", layer, user) < layer.holdout`` → no experiment of the layer;
2. layer range: ``h("layer", layer, user) * 10000`` must fall in the spec's ``[lo, hi)``,
   so experiments of one layer (disjoint ranges) are mutually exclusive;
3. variant: ``h(salt, user)`` against the cumulative variant weights.

``compose`` puts the experiments of one surface together for a user: its holdout first, then
every experiment the user is in overlays the surface's defaults with its variant's parameters.

>>> from experiments.spec import parse_spec
>>> spec = parse_spec({"id": "x", "salt": "s1", "start": "2026-01-01T00:00:00Z",
...     "end": "2026-02-01T00:00:00Z", "control": "a",
...     "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
...     "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
...                  "measure": "plays", "window": {"length": "7d"}}]})
>>> assign(spec, "user-1") == assign(spec, "user-1")
True
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from experiments.errors import SpecConflict
from experiments.spec import LAYER_BUCKETS, ExperimentSpec
from experiments.surfaces import Surface

_SEP = "\x1f"  # unit separator: ("a", "bc") and ("ab", "c") hash differently
_SCALE = 2.0**-64


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts, stable across processes and versions."""
    digest = blake2b(_SEP.join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def layer_bucket(layer: str, user_id: str) -> int:
    """The user's bucket in [0, LAYER_BUCKETS) of a layer."""
    return int(unit_hash("layer", layer, user_id) * LAYER_BUCKETS)


def in_holdout(spec: ExperimentSpec, user_id: str) -> bool:
    """Whether the user is held out of every experiment of the spec's layer."""
    layer = spec.layer
    return layer is not None and layer.holdout > 0.0 and unit_hash("holdout", layer.name, user_id) < layer.holdout


def assign(spec: ExperimentSpec, user_id: str, *, at_ms: int | None = None, sticky: str | None = None) -> str | None:
    """The user's variant, or None (holdout, outside the layer range, or ``at_ms`` outside [start, end)).

    A bandit experiment's weights move from period to period: a user arriving at ``at_ms`` gets the
    weights of that period, and a user assigned before keeps its variant (``sticky``, what the
    sticky-assignment log remembers for the user).
    """
    if at_ms is not None and not spec.start <= at_ms < spec.end:
        return None
    layer = spec.layer
    if layer is not None:
        if layer.holdout > 0.0 and unit_hash("holdout", layer.name, user_id) < layer.holdout:
            return None
        lo, hi = layer.buckets
        if not lo <= int(unit_hash("layer", layer.name, user_id) * LAYER_BUCKETS) < hi:
            return None
    if sticky is not None and spec.variant(sticky) is not None:
        return sticky
    u = unit_hash(spec.salt, user_id)
    for cutoff, name in (spec.cutoffs_at(at_ms) if spec.kind == "bandit" else spec.variant_cutoffs):
        if u < cutoff:
            return name
    raise AssertionError("unreachable: the last cutoff is above 1")  # pragma: no cover


def assign_all(specs: Iterable[ExperimentSpec], user_id: str, *, at_ms: int | None = None) -> dict[str, str]:
    """``{experiment id: variant}`` for every spec the user takes part in."""
    out = {}
    for spec in specs:
        variant = assign(spec, user_id, at_ms=at_ms)
        if variant is not None:
            out[spec.id] = variant
    return out


def check_layers(specs: Iterable[ExperimentSpec]) -> None:
    """Raise ``SpecConflict`` if experiments of a layer overlap or disagree on the holdout, or ids repeat."""
    seen: dict[str, ExperimentSpec] = {}
    by_layer: dict[str, list[ExperimentSpec]] = {}
    for spec in specs:
        if spec.id in seen:
            raise SpecConflict(f"id: experiment {spec.id!r} is defined twice")
        seen[spec.id] = spec
        if spec.layer is not None:
            by_layer.setdefault(spec.layer.name, []).append(spec)
    for name, members in by_layer.items():
        members.sort(key=lambda s: s.layer.buckets)  # type: ignore[union-attr]
        for a, b in zip(members, members[1:], strict=False):
            if a.layer.buckets[1] > b.layer.buckets[0]:  # type: ignore[union-attr]
                raise SpecConflict(
                    f"layer.buckets: {a.id!r} {list(a.layer.buckets)} and {b.id!r} "  # type: ignore[union-attr]
                    f"{list(b.layer.buckets)} overlap in layer {name!r}"  # type: ignore[union-attr]
                )
        holdouts = {s.layer.holdout for s in members}  # type: ignore[union-attr]
        if len(holdouts) > 1:
            raise SpecConflict(f"layer.holdout: experiments of layer {name!r} disagree ({sorted(holdouts)})")


@dataclass(slots=True)
class Composition:
    """What one user is served on one surface, and which experiment set each parameter.

    ``read(name)`` is how serving takes a parameter: it remembers the experiment that set it, so
    ``used()`` names exactly the experiments whose parameters shaped the response (one exposure
    each, at the point of use). A surface's holdout is used by every request to the surface.
    """

    surface: str
    values: dict[str, Any]
    sources: dict[str, tuple[str, str]]  # parameter -> (experiment, variant) that set it
    assignments: dict[str, str]  # every experiment of the surface the user is in -> variant
    holdout: tuple[str, str] | None = None  # (holdout experiment, variant) of the user
    conflicts: tuple[str, ...] = ()  # experiments whose parameters another experiment already set
    new_sticky: tuple[tuple[str, str], ...] = ()  # bandit experiments the user joined now: (experiment, variant)
    _read: set[str] = field(default_factory=set)

    def read(self, name: str) -> Any:
        self._read.add(name)
        return self.values[name]

    def used(self) -> dict[str, str]:
        """``{experiment: variant}`` of the experiments whose parameters were read, and the holdout."""
        out = dict([self.holdout]) if self.holdout is not None else {}
        for name in sorted(self._read):
            source = self.sources.get(name)
            if source is not None:
                out[source[0]] = source[1]
        return out

    def parameters_set(self, experiment: str) -> list[str]:
        """The parameters ``experiment`` set in this composition that were read."""
        return sorted(n for n in self._read if n in self.sources and self.sources[n][0] == experiment)


class SurfaceIndex:
    """The specs of every surface arranged for ``compose``: holdouts, then per layer the experiments
    by bucket range, so a user costs one layer hash per layer and one variant hash per experiment
    it is in, however many experiments share the layer. Build it once per set of specs."""

    def __init__(self, specs: Iterable[ExperimentSpec]) -> None:
        self.holdouts: dict[str, list[ExperimentSpec]] = {}
        self.layers: dict[str, dict[str, tuple[list[int], list[ExperimentSpec]]]] = {}  # surface -> layer -> ranges
        self.unlayered: dict[str, list[ExperimentSpec]] = {}
        self.by_id: dict[str, ExperimentSpec] = {}
        for spec in sorted(specs, key=lambda s: s.id):
            if spec.status == "draft":
                continue  # never served
            self.by_id[spec.id] = spec
            if spec.kind == "holdout":
                self.holdouts.setdefault(spec.surface, []).append(spec)
            elif spec.layer is None:
                self.unlayered.setdefault(spec.surface, []).append(spec)
            else:
                starts, members = self.layers.setdefault(spec.surface, {}).setdefault(spec.layer.name, ([], []))
                at = bisect_right(starts, spec.layer.buckets[0])
                starts.insert(at, spec.layer.buckets[0])
                members.insert(at, spec)

    def candidates(self, surface: str, user_id: str) -> list[ExperimentSpec]:
        """The experiments of ``surface`` whose layer range holds the user (by id), holdouts excluded."""
        out = list(self.unlayered.get(surface, ()))
        for layer, (starts, members) in self.layers.get(surface, {}).items():
            bucket = layer_bucket(layer, user_id)
            at = bisect_right(starts, bucket) - 1
            # ranges of one layer are disjoint (check_layers); records that break that rule are
            # still served: every member whose range holds the bucket is a candidate
            while at >= 0 and members[at].layer.buckets[1] > bucket:  # type: ignore[union-attr]
                out.append(members[at])
                at -= 1
        out.sort(key=lambda s: s.id)
        return out


def compose(
    surface: Surface, specs: Iterable[ExperimentSpec] | SurfaceIndex, user_id: str, *, at_ms: int | None = None,
    sticky: Callable[[str, str], str | None] | None = None,
) -> Composition:
    """The surface's defaults overlaid with the variants of every experiment ``user_id`` is in.

    ``sticky(experiment, user)`` is the variant a bandit experiment gave the user before, if any;
    a user a bandit experiment assigns for the first time is listed in ``new_sticky``.
    A stopped or decided experiment gives its users its control's parameters and exposes nobody; a
    draft is not served. Specs of other surfaces are ignored. A user in the held-out variant (the ``control``) of the
    surface's holdout gets the defaults and no other experiment. Two experiments that set one
    parameter for the same user cannot both be admitted (``check_parameters``); should their
    records meet anyway, the first by id keeps it and the other is named in ``conflicts``.
    """
    index = specs if isinstance(specs, SurfaceIndex) else SurfaceIndex(specs)
    values = surface.defaults()
    sources: dict[str, tuple[str, str]] = {}
    assignments: dict[str, str] = {}
    holdout: tuple[str, str] | None = None
    conflicts: list[str] = []
    for spec in index.holdouts.get(surface.name, ()):
        if spec.status != "running":
            continue  # a stopped holdout holds nobody out
        held = assign(spec, user_id, at_ms=at_ms)
        if held is not None and holdout is None:
            holdout = (spec.id, held)
            assignments[spec.id] = held
            if held == spec.control:
                return Composition(surface.name, values, sources, assignments, holdout)
    new_sticky: list[tuple[str, str]] = []
    for spec in index.candidates(surface.name, user_id):
        if spec.status != "running":  # stopped or decided: its users get its control, and no exposure
            control = spec.variant(spec.control)
            if control is not None and assign(spec, user_id, at_ms=at_ms) is not None:
                for name, value in control.params.items():
                    if name in values and name not in sources:
                        values[name] = value
            continue
        before = sticky(spec.id, user_id) if sticky is not None and spec.kind == "bandit" else None
        variant_name = assign(spec, user_id, at_ms=at_ms, sticky=before)
        if variant_name is None:
            continue
        if spec.kind == "bandit" and before != variant_name:
            new_sticky.append((spec.id, variant_name))
        variant = spec.variant(variant_name)
        if variant is None:  # pragma: no cover - assign only answers the spec's variants
            continue
        assignments[spec.id] = variant_name
        for name, value in variant.params.items():
            if name not in values:
                continue  # a parameter the surface does not have: refused at apply, ignored here
            if name in sources:
                conflicts.append(spec.id)
                continue
            values[name] = value
            sources[name] = (spec.id, variant_name)
    return Composition(surface.name, values, sources, assignments, holdout, tuple(conflicts), tuple(new_sticky))


def overlaps_in_time(a: ExperimentSpec, b: ExperimentSpec) -> bool:
    return a.start < b.end and b.start < a.end


def check_parameters(specs: Iterable[ExperimentSpec]) -> None:
    """Raise ``SpecConflict`` if two experiments could set one parameter for the same user.

    Experiments of one layer are exclusive (``check_layers``), so only experiments of different
    layers (or of none) on the same surface, live at the same time, can collide.
    """
    by_surface: dict[str, list[ExperimentSpec]] = {}
    for spec in specs:
        if spec.kind != "holdout" and spec.parameters:
            by_surface.setdefault(spec.surface, []).append(spec)
    for surface, members in by_surface.items():
        members.sort(key=lambda s: s.id)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                shared = sorted(a.parameters & b.parameters)
                same_layer = a.layer is not None and b.layer is not None and a.layer.name == b.layer.name
                if shared and not same_layer and overlaps_in_time(a, b):
                    raise SpecConflict(
                        f"variants.params: experiments {a.id!r} and {b.id!r} both set {', '.join(shared)} "
                        f"on surface {surface!r} for the same users; put them in one layer (disjoint buckets)"
                    )


def check_holdouts(specs: Iterable[ExperimentSpec]) -> None:
    """Raise ``SpecConflict`` if a surface has two holdouts live at the same time."""
    by_surface: dict[str, list[ExperimentSpec]] = {}
    for spec in specs:
        if spec.kind == "holdout":
            by_surface.setdefault(spec.surface, []).append(spec)
    for surface, members in by_surface.items():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if overlaps_in_time(a, b):
                    raise SpecConflict(f"kind: {a.id!r} and {b.id!r} are both holdouts of surface {surface!r}")


def surface_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values as JSON (a policy as ``{"policy", "params"}``)."""
    return {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in values.items()}
