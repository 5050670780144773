"""Surfaces and their parameters: what a variant may set.

A surface (``home``, ``search``) is a part of the app with named, typed parameters and their
defaults. An experiment runs on one surface; each of its variants overrides some of the
surface's parameters. What a user is served on a surface is the defaults overlaid with the
variants of every experiment the user is in (``experiments.assignment.compose``).

The catalogue is YAML (``experiments/surfaces.yaml`` by default):

>>> catalog = parse_surfaces({"surfaces": [{"name": "home", "parameters": [
...     {"name": "ranker", "type": "policy", "default": {"policy": "popularity"}},
...     {"name": "num_items", "type": "int", "default": 3, "minimum": 1, "maximum": 20}]}]})
>>> catalog["home"].defaults()["num_items"]
3
>>> catalog["home"].parameter("num_items").check(25)
Traceback (most recent call last):
...
ValueError: must be at most 20
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experiments.errors import InvalidSpec
from experiments.validation import describe, load_yaml

if TYPE_CHECKING:
    from experiments.spec import ExperimentSpec

SURFACES_PATH = Path(__file__).resolve().parent / "surfaces.yaml"
#: The parameter that names the policy choosing what a surface shows; a variant's ``policy`` sets it.
RANKER = "ranker"

Name = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
PolicyParamValue = float | int | str | bool


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyChoice(_Frozen):
    """The value of a ``policy`` parameter: a policy by name with its constructor parameters."""

    policy: Name
    params: dict[Name, PolicyParamValue] = Field(default_factory=dict)


#: What a variant may write as a parameter value.
ParameterValue = PolicyChoice | bool | int | float | str

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


class Parameter(_Frozen):
    name: Name
    type: Literal["policy", "int", "float", "bool", "str"]
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check_default(self) -> Parameter:
        try:
            object.__setattr__(self, "default", self.check(self.default))
        except ValueError as exc:
            raise ValueError(f"default: {exc}") from None
        return self

    def check(self, value: Any) -> Any:
        """The value in its canonical form, or ``ValueError`` saying what is wrong with it."""
        if self.type == "policy":
            if isinstance(value, PolicyChoice):
                return value
            if not isinstance(value, Mapping):
                raise ValueError("must be a policy: {policy: NAME, params: {...}}")
            try:
                return PolicyChoice.model_validate(dict(value))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{where}: {first['msg']}") from None
        if isinstance(value, bool) and self.type != "bool" or not isinstance(value, _PYTHON_TYPES[self.type]):
            raise ValueError(f"must be of type {self.type}, got {type(value).__name__} {value!r}")
        if self.type == "float":
            value = float(cast(float, value))
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}")
        return value


class Surface(_Frozen):
    name: Name
    description: str = ""
    parameters: Annotated[tuple[Parameter, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _distinct(self) -> Surface:
        names = [p.name for p in self.parameters]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"parameters[{i}].name: duplicate parameter {name!r}")
        return self

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}


class _Catalog(_Frozen):
    surfaces: Annotated[tuple[Surface, ...], Field(min_length=1)]


def parse_surfaces(data: Any) -> dict[str, Surface]:
    """``{name: Surface}`` from a mapping ``{"surfaces": [...]}``; ``InvalidSpec`` naming the field."""
    try:
        catalog = _Catalog.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"surfaces: {describe(exc)}") from None
    out: dict[str, Surface] = {}
    for i, surface in enumerate(catalog.surfaces):
        if surface.name in out:
            raise InvalidSpec(f"surfaces: surfaces[{i}].name: duplicate surface {surface.name!r}")
        out[surface.name] = surface
    return out


def load_surfaces(path: str | Path = SURFACES_PATH) -> dict[str, Surface]:
    return load_yaml(path, parse_surfaces)


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
