"""Specs the aggregator cannot fold are refused with the field named."""

from __future__ import annotations

import json
import re

import pytest

from experiments.aggregation.foldable import DAY, MAX_PRE_PERIOD_MS, check_foldable
from experiments.errors import InvalidSpec
from experiments.spec import DEMO_SPEC_PATH, load_spec, parse_spec, spec_to_json


def test_the_demo_spec_folds():
    spec = load_spec(DEMO_SPEC_PATH)
    assert check_foldable(spec) is spec


def test_a_pre_period_longer_than_the_aggregator_keeps_names_the_field():
    spec = load_spec(DEMO_SPEC_PATH)
    with pytest.raises(InvalidSpec, match=r"metrics\[1\]\.covariate\.length: 7 days is longer .* \(6 days\)"):
        check_foldable(spec, max_pre_period_ms=6 * DAY)
    assert MAX_PRE_PERIOD_MS >= 7 * DAY


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("measure",), {"agg": "count", "types": ["dance"]}, "metrics[0].measure.types[0]"),
        (("kind",), "median", "metrics[0].kind"),
    ],
)
def test_an_unknown_event_type_or_metric_kind_is_refused_naming_the_field(path, value, field):
    data = json.loads(spec_to_json(load_spec(DEMO_SPEC_PATH)))
    data["metrics"][0][path[0]] = value
    with pytest.raises(InvalidSpec, match=re.escape(field)):
        parse_spec(data)


def test_without_item_sets_a_distinct_measure_is_refused_naming_the_field():
    data = json.loads(spec_to_json(load_spec(DEMO_SPEC_PATH)))
    data["metrics"][0]["measure"] = "distinct_genres"
    spec = parse_spec(data)
    assert check_foldable(spec) is spec
    with pytest.raises(InvalidSpec, match=re.escape("metrics[0].measure.agg: distinct_genres needs the item")):
        check_foldable(spec, item_sets=False)
    assert check_foldable(load_spec(DEMO_SPEC_PATH), item_sets=False) is not None  # counts and sums only


def test_apply_refuses_a_pre_period_the_aggregator_does_not_keep():
    from experiments.admission import admit
    from experiments.surfaces import load_surfaces

    data = json.loads(spec_to_json(load_spec(DEMO_SPEC_PATH)))
    data["metrics"][1]["covariate"] = {"length": MAX_PRE_PERIOD_MS + DAY}
    with pytest.raises(InvalidSpec, match=re.escape("metrics[1].covariate.length: 29 days is longer")):
        admit(parse_spec(data), live=[], surfaces=load_surfaces())
