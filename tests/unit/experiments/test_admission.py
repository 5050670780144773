"""What a spec must pass before it joins the live experiments: every refusal names the field."""

from __future__ import annotations

import pytest

from experiments.admission import admit, check_against_surfaces
from experiments.errors import InvalidSpec, SpecConflict
from experiments.spec import DEMO_SPEC_PATHS, load_spec, parse_spec
from experiments.surfaces import load_surfaces

SURFACES = load_surfaces()


def spec(**changes: object) -> dict:
    data = {
        "id": "layout", "salt": "s", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z",
        "control": "a", "surface": "home", "layer": {"name": "layout"},
        "variants": [{"name": "a", "weight": 0.5, "params": {"num_items": 3}},
                     {"name": "b", "weight": 0.5, "params": {"num_items": 5}}],
        "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                     "measure": "plays", "window": {"length": "7d"}}],
    }
    data.update(changes)
    return data


def test_the_demo_experiments_are_admitted_together():
    live = []
    for path in DEMO_SPEC_PATHS:
        admitted = load_spec(path)
        admit(admitted, live=live, surfaces=SURFACES)
        live.append(admitted)


@pytest.mark.parametrize(("changes", "message"), [
    ({"surface": "nowhere"}, "surface: unknown surface 'nowhere'"),
    ({"variants": [{"name": "a", "weight": 0.5, "params": {"colour": "red"}},
                   {"name": "b", "weight": 0.5}]}, r"variants\[0\]\.params\.colour: not a parameter of surface 'home'"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "params": {"num_items": "five"}}]},
     r"variants\[1\]\.params\.num_items: must be of type int"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "params": {"num_items": 99}}]},
     r"variants\[1\]\.params\.num_items: must be at most 20"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "params": {"ranker": 3}}]},
     r"variants\[1\]\.params\.ranker: must be a policy"),
])
def test_parameters_must_exist_on_the_surface_with_the_right_type(changes, message):
    with pytest.raises(InvalidSpec, match=message):
        check_against_surfaces(parse_spec(spec(**changes)), SURFACES)


def test_weights_must_sum_to_one_and_a_policy_is_shorthand_for_the_ranker():
    with pytest.raises(InvalidSpec, match="variants: weights must sum to 1"):
        parse_spec(spec(variants=[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.4}]))
    shorthand = parse_spec(spec(variants=[{"name": "a", "weight": 0.5, "policy": "linucb",
                                           "policy_params": {"alpha": 0.5}}, {"name": "b", "weight": 0.5}]))
    assert shorthand.variants[0].ranker.policy == "linucb" and shorthand.variants[0].policy_params == {"alpha": 0.5}
    assert shorthand.parameters == {"ranker"}
    with pytest.raises(InvalidSpec, match=r"variants\[0\]\.params\.ranker: set either policy or params\.ranker"):
        parse_spec(spec(variants=[{"name": "a", "weight": 0.5, "policy": "p", "params": {"ranker": {"policy": "q"}}},
                                  {"name": "b", "weight": 0.5}]))


def test_a_second_owner_of_a_parameter_is_refused_naming_both():
    live = [parse_spec(spec())]
    other = parse_spec(spec(id="layout2", salt="s2", layer={"name": "other-layer"}))
    with pytest.raises(SpecConflict, match="'layout' and 'layout2' both set num_items"):
        admit(other, live=live, surfaces=SURFACES)
    later = parse_spec(spec(id="layout3", salt="s3", layer={"name": "other-layer"},
                            start="2026-02-01T00:00:00Z", end="2026-03-01T00:00:00Z"))
    admit(later, live=live, surfaces=SURFACES)  # not live at the same time


def test_a_new_version_replaces_its_own_previous_one():
    live = [parse_spec(spec())]
    admit(parse_spec(spec(description="clearer words")), live=live, surfaces=SURFACES)


def test_a_holdout_sets_nothing_and_has_no_layer():
    holdout = {"kind": "holdout", "layer": None,
               "variants": [{"name": "a", "weight": 0.05}, {"name": "b", "weight": 0.95}]}
    parse_spec(spec(**holdout))
    with pytest.raises(InvalidSpec, match="layer: a holdout is salted apart"):
        parse_spec(spec(**{**holdout, "layer": {"name": "x"}}))
    with pytest.raises(InvalidSpec, match=r"variants\[0\]\.params: a holdout's variants set no parameters"):
        parse_spec(spec(**{**holdout, "variants": [{"name": "a", "weight": 0.05, "params": {"num_items": 1}},
                                                   {"name": "b", "weight": 0.95}]}))
