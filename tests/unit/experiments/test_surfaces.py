"""The surfaces catalogue: parameters, their types and defaults, errors that name the field."""

from __future__ import annotations

import pytest

from experiments.errors import InvalidSpec
from experiments.spec import DEFAULT_SURFACE
from experiments.surfaces import RANKER, PolicyChoice, load_surfaces, parse_surfaces


def catalog(parameters: list[dict]) -> dict:
    return {"surfaces": [{"name": "home", "parameters": parameters}]}


def test_the_shipped_catalogue_has_the_default_surface_with_a_ranker():
    surfaces = load_surfaces()
    home = surfaces[DEFAULT_SURFACE]
    assert isinstance(home.defaults()[RANKER], PolicyChoice)
    assert home.parameter("num_items").check(5) == 5


@pytest.mark.parametrize(("kind", "good", "bad", "message"), [
    ("int", 4, 4.5, "must be of type int"),
    ("int", 4, True, "must be of type int"),
    ("float", 1, "x", "must be of type float"),
    ("bool", False, 0, "must be of type bool"),
    ("str", "a", 1, "must be of type str"),
    ("policy", {"policy": "linucb", "params": {"alpha": 0.5}}, "linucb", "must be a policy"),
])
def test_values_are_checked_against_the_parameter_type(kind, good, bad, message):
    default = {"policy": "p"} if kind == "policy" else good
    parameter = parse_surfaces(catalog([{"name": "x", "type": kind, "default": default}]))["home"].parameter("x")
    parameter.check(good)
    with pytest.raises(ValueError, match=message):
        parameter.check(bad)


def test_bounds_are_enforced_and_errors_name_the_field():
    surfaces = parse_surfaces(catalog([{"name": "n", "type": "int", "default": 3, "minimum": 1, "maximum": 9}]))
    with pytest.raises(ValueError, match="at least 1"):
        surfaces["home"].parameter("n").check(0)
    with pytest.raises(InvalidSpec, match=r"surfaces\[0\]\.parameters\[0\]\.default: must be at most 9"):
        parse_surfaces(catalog([{"name": "n", "type": "int", "default": 30, "maximum": 9}]))
    with pytest.raises(InvalidSpec, match=r"parameters\[1\]\.name: duplicate parameter 'n'"):
        twice = {"name": "n", "type": "int", "default": 1}
        parse_surfaces(catalog([twice, twice]))
    with pytest.raises(InvalidSpec, match="surfaces: surfaces"):
        parse_surfaces({"surfaces": []})
