"""Deterministic assignment of users to experiment variants.

A pure function of (spec, user id): the same answer in every process, on every host and
in every version, because it hashes with BLAKE2b (never Python's salted ``hash()``).

Three independent hashes decide, in this order:

1. holdout: ``h("holdout", layer, user) < layer.holdout`` → no experiment of the layer;
2. layer range: ``h("layer", layer, user) * 10000`` must fall in the spec's ``[lo, hi)``,
   so experiments of one layer (disjoint ranges) are mutually exclusive;
3. variant: ``h(salt, user)`` against the cumulative variant weights.

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

from collections.abc import Iterable
from hashlib import blake2b

from experiments.errors import SpecConflict
from experiments.spec import LAYER_BUCKETS, ExperimentSpec

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


def assign(spec: ExperimentSpec, user_id: str, *, at_ms: int | None = None) -> str | None:
    """The user's variant, or None (holdout, outside the layer range, or ``at_ms`` outside [start, end))."""
    if at_ms is not None and not spec.start <= at_ms < spec.end:
        return None
    layer = spec.layer
    if layer is not None:
        if layer.holdout > 0.0 and unit_hash("holdout", layer.name, user_id) < layer.holdout:
            return None
        lo, hi = layer.buckets
        if not lo <= int(unit_hash("layer", layer.name, user_id) * LAYER_BUCKETS) < hi:
            return None
    u = unit_hash(spec.salt, user_id)
    for cutoff, name in spec.variant_cutoffs:
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
