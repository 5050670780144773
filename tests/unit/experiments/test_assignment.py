"""Deterministic assignment: uniform, independent across salts, stable, weighted, layered."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from experiments.assignment import assign, assign_all, check_layers, in_holdout, layer_bucket, unit_hash
from experiments.errors import SpecConflict
from experiments.spec import ExperimentSpec, parse_spec

USERS = [f"user-{i}" for i in range(20_000)]
P_MIN = 1e-3  # the user ids are fixed, so these p-values are too: no flakiness


def make_spec(
    id: str = "exp", salt: str = "salt", weights=(0.5, 0.5), layer: dict | None = None
) -> ExperimentSpec:
    data = {
        "id": id, "salt": salt, "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z",
        "control": "v0",
        "variants": [{"name": f"v{i}", "weight": w, "policy": "p"} for i, w in enumerate(weights)],
        "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                     "measure": "plays", "window": {"length": "7d"}}],
    }
    if layer is not None:
        data["layer"] = layer
    return parse_spec(data)


#: Computed once and pinned: if these change, every running experiment reshuffles its users.
GOLDEN = [
    ("u1", 0.49190090824931465, 3584, "v1"),
    ("user-42", 0.9008527220226265, 3008, "v3"),
    ("alice", 0.8434407066789369, 2620, "v3"),
    ("0", 0.010855805177998836, 1983, "v0"),
    ("\u00e9l\u00e8ve", 0.7612617850985337, 8180, "v3"),
]


@pytest.mark.parametrize(("user", "hashed", "bucket", "variant"), GOLDEN)
def test_golden_assignments_never_change(user, hashed, bucket, variant):
    assert unit_hash("golden-salt", user) == hashed
    assert layer_bucket("recommendations", user) == bucket
    assert assign(make_spec(salt="golden-salt", weights=(0.25,) * 4), user) == variant


def test_same_answer_in_another_process_with_another_hash_seed():
    code = "from experiments.assignment import unit_hash; print(repr(unit_hash('golden-salt', 'u1')))"
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=Path(__file__).resolve().parents[3],
        )
        assert out.stdout.strip() == repr(GOLDEN[0][1])


def test_variants_are_uniform():
    spec = make_spec(weights=(0.25,) * 4)
    counts = Counter(assign(spec, u) for u in USERS)
    assert stats.chisquare([counts[f"v{i}"] for i in range(4)]).pvalue > P_MIN


def test_weights_are_respected():
    weights = (0.1, 0.3, 0.6)
    spec = make_spec(weights=weights)
    counts = Counter(assign(spec, u) for u in USERS)
    observed = [counts[f"v{i}"] for i in range(3)]
    assert stats.chisquare(observed, [w * len(USERS) for w in weights]).pvalue > P_MIN


def test_layer_buckets_are_uniform():
    counts = Counter(layer_bucket("L", u) // 1000 for u in USERS)
    assert stats.chisquare([counts[i] for i in range(10)]).pvalue > P_MIN


def test_experiments_with_different_salts_are_independent():
    a, b = make_spec("a", "salt-a"), make_spec("b", "salt-b", weights=(0.2, 0.3, 0.5))
    table = Counter((assign(a, u), assign(b, u)) for u in USERS)
    matrix = [[table[(f"v{i}", f"v{j}")] for j in range(3)] for i in range(2)]
    assert stats.chi2_contingency(matrix).pvalue > P_MIN


def test_layers_are_mutually_exclusive_and_share_the_holdout():
    layer = {"name": "L", "holdout": 0.1}
    left = make_spec("left", "s1", layer={**layer, "buckets": [0, 3000]})
    right = make_spec("right", "s2", layer={**layer, "buckets": [3000, 10_000]})
    other = make_spec("other", "s3", layer={"name": "M", "holdout": 0.1})
    check_layers([left, right, other])
    both = in_left = in_right = held = 0
    for user in USERS:
        got = assign_all([left, right, other], user)
        both += "left" in got and "right" in got
        in_left += "left" in got
        in_right += "right" in got
        if in_holdout(left, user):
            held += 1
            assert "left" not in got and "right" not in got
    assert both == 0
    assert in_left + in_right + held == len(USERS)  # every user is in exactly one of the three
    assert stats.binomtest(held, len(USERS), 0.1).pvalue > P_MIN
    assert stats.binomtest(in_left, len(USERS) - held, 0.3).pvalue > P_MIN


def test_holdouts_of_different_layers_are_independent():
    a = make_spec("a", "s1", layer={"name": "L", "holdout": 0.5})
    b = make_spec("b", "s2", layer={"name": "M", "holdout": 0.5})
    table = Counter((in_holdout(a, u), in_holdout(b, u)) for u in USERS)
    matrix = [[table[(x, y)] for y in (False, True)] for x in (False, True)]
    assert stats.chi2_contingency(matrix).pvalue > P_MIN


def test_check_layers_refuses_overlaps_and_disagreeing_holdouts():
    a = make_spec("a", "s1", layer={"name": "L", "buckets": [0, 5000]})
    with pytest.raises(SpecConflict, match="overlap in layer 'L'"):
        check_layers([a, make_spec("b", "s2", layer={"name": "L", "buckets": [4999, 10_000]})])
    with pytest.raises(SpecConflict, match="disagree"):
        check_layers([a, make_spec("b", "s2", layer={"name": "L", "buckets": [5000, 10_000], "holdout": 0.1})])
    with pytest.raises(SpecConflict, match="defined twice"):
        check_layers([a, a])


def test_nobody_is_assigned_outside_the_experiment_period():
    spec = make_spec()
    assert assign(spec, "u1", at_ms=spec.start - 1) is None
    assert assign(spec, "u1", at_ms=spec.end) is None
    assert assign(spec, "u1", at_ms=spec.start) == assign(spec, "u1")


@settings(max_examples=200, deadline=None)
@given(user=st.text(min_size=1, max_size=40), salt=st.text(min_size=1, max_size=20))
def test_assignment_is_a_pure_function(user, salt):
    spec = make_spec(salt=salt, weights=(0.2, 0.8))
    first = assign(spec, user)
    assert first in {"v0", "v1"}
    assert assign(spec.model_copy(), user) == first
    assert 0.0 <= unit_hash(salt, user) < 1.0


# ---- composition: surfaces, layers, parameters, holdouts ----------------------------------------

from experiments.assignment import check_holdouts, check_parameters, compose  # noqa: E402
from experiments.surfaces import PolicyChoice, parse_surfaces  # noqa: E402

HOME = parse_surfaces({"surfaces": [{"name": "home", "parameters": [
    {"name": "ranker", "type": "policy", "default": {"policy": "popularity"}},
    {"name": "num_items", "type": "int", "default": 3, "minimum": 1, "maximum": 20}]}]})["home"]


def param_spec(id: str, salt: str, params: tuple[dict, dict], *, layer: dict | None = None, kind: str = "ab",
               weights: tuple[float, float] = (0.5, 0.5), surface: str = "home") -> ExperimentSpec:
    data = {
        "id": id, "salt": salt, "kind": kind, "surface": surface, "start": "2026-01-01T00:00:00Z",
        "end": "2026-02-01T00:00:00Z", "control": "v0",
        "variants": [{"name": f"v{i}", "weight": w, "params": p}
                     for i, (w, p) in enumerate(zip(weights, params, strict=True))],
        "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                     "measure": "plays", "window": {"length": "7d"}}],
    }
    if layer is not None:
        data["layer"] = layer
    return parse_spec(data)


RANKERS = ({"ranker": {"policy": "popularity"}}, {"ranker": {"policy": "linucb"}})
ITEMS = ({"num_items": 3}, {"num_items": 1})
RANK_A = param_spec("rank_a", "ra", RANKERS, layer={"name": "ranking", "buckets": [0, 4000]})
RANK_B = param_spec("rank_b", "rb", RANKERS, layer={"name": "ranking", "buckets": [4000, 10_000]})
LAYOUT = param_spec("layout", "lo", ITEMS, layer={"name": "layout"})
HOLDOUT = param_spec("holdout", "ho", ({}, {}), kind="holdout", weights=(0.05, 0.95))
LIVE = [RANK_A, RANK_B, LAYOUT, HOLDOUT]


def test_every_user_gets_the_defaults_overlaid_with_each_experiment_it_is_in():
    check_layers(LIVE)
    check_parameters(LIVE)
    for user in USERS[:5000]:
        c = compose(HOME, LIVE, user)
        if c.holdout == ("holdout", "v0"):  # held out: the surface's defaults, no experiment
            assert c.values == HOME.defaults() and c.sources == {} and set(c.assignments) == {"holdout"}
            continue
        assert not ("rank_a" in c.assignments and "rank_b" in c.assignments)  # one layer: exclusive
        assert "layout" in c.assignments  # the layout layer has one experiment taking every bucket
        for name, (experiment, variant) in c.sources.items():
            spec = next(s for s in LIVE if s.id == experiment)
            assert c.values[name] == spec.variant(variant).params[name]
        assert c.values["num_items"] == (3 if c.assignments["layout"] == "v0" else 1)


def test_layers_are_orthogonal_and_the_holdout_is_salted_apart():
    held = 0
    table: Counter = Counter()
    for user in USERS:
        c = compose(HOME, LIVE, user)
        if c.holdout == ("holdout", "v0"):
            held += 1
            continue
        rank = c.assignments.get("rank_a") or c.assignments.get("rank_b")
        table[(rank, c.assignments["layout"])] += 1
    matrix = [[table[(r, v)] for v in ("v0", "v1")] for r in ("v0", "v1")]
    assert stats.chi2_contingency(matrix).pvalue > P_MIN  # ranker arm independent of the layout arm
    assert stats.binomtest(held, len(USERS), 0.05).pvalue > P_MIN


def test_only_the_parameters_read_expose_their_experiment():
    user = next(u for u in USERS if compose(HOME, LIVE, u).holdout == ("holdout", "v1"))
    c = compose(HOME, LIVE, user)
    assert c.used() == {"holdout": "v1"}  # nothing read yet: only the surface's holdout
    c.read("num_items")
    assert c.used() == {"holdout": "v1", "layout": c.assignments["layout"]}
    assert c.parameters_set("layout") == ["num_items"]
    assert isinstance(c.read("ranker"), PolicyChoice)
    ranker_experiment = "rank_a" if "rank_a" in c.assignments else "rank_b"
    assert set(c.used()) == {"holdout", "layout", ranker_experiment}


def test_a_spec_on_another_surface_shapes_nothing_here():
    search = param_spec("search_rank", "sr", RANKERS, surface="search")
    c = compose(HOME, [search], "u1")
    assert c.values == HOME.defaults() and c.assignments == {}


def test_two_experiments_setting_one_parameter_must_share_a_layer():
    other_layer = param_spec("rank_c", "rc", RANKERS, layer={"name": "elsewhere"})
    with pytest.raises(SpecConflict, match="'rank_a' and 'rank_c' both set ranker"):
        check_parameters([RANK_A, other_layer])
    no_layer = param_spec("rank_d", "rd", RANKERS)
    with pytest.raises(SpecConflict, match="both set ranker"):
        check_parameters([no_layer, RANK_B])
    check_parameters([RANK_A, RANK_B, LAYOUT])  # same layer, or different parameters: fine
    check_parameters([other_layer, param_spec("rank_e", "re", RANKERS, surface="search")])  # other surface


def test_conflicting_records_keep_the_first_owner_and_name_the_other():
    clash = param_spec("zz_rank", "zz", RANKERS, layer={"name": "elsewhere"})
    user = next(u for u in USERS if "rank_a" in compose(HOME, [RANK_A, clash], u).assignments)
    c = compose(HOME, [RANK_A, clash], user)
    assert c.sources["ranker"][0] == "rank_a" and c.conflicts == ("zz_rank",)


def test_one_holdout_per_surface():
    with pytest.raises(SpecConflict, match="both holdouts of surface 'home'"):
        check_holdouts([HOLDOUT, param_spec("holdout2", "h2", ({}, {}), kind="holdout", weights=(0.1, 0.9))])


@settings(max_examples=300, deadline=None)
@given(user=st.text(min_size=1, max_size=40), split=st.integers(min_value=1, max_value=9_999))
def test_a_layer_split_anywhere_puts_each_user_in_at_most_one_of_its_experiments(user, split):
    a = param_spec("a", "sa", RANKERS, layer={"name": "L", "buckets": [0, split]})
    b = param_spec("b", "sb", RANKERS, layer={"name": "L", "buckets": [split, 10_000]})
    c = compose(HOME, [a, b], user)
    assert len(c.assignments) == 1  # the two ranges cover the layer: exactly one
    assert c.sources["ranker"][0] in c.assignments
