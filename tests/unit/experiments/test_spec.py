"""Experiment specs: the shipped example, JSON round trip, and errors that name the field."""

from __future__ import annotations

import copy

import pytest

from experiments.errors import InvalidSpec
from experiments.spec import (
    SPECS_DIR,
    load_spec,
    parse_duration,
    parse_instant,
    parse_spec,
    spec_from_json,
    spec_to_json,
)

SPECS = SPECS_DIR
DAY = 86_400_000

BASE = {
    "id": "exp1",
    "salt": "exp1-salt",
    "start": "2026-01-01T00:00:00Z",
    "end": "2026-02-01T00:00:00Z",
    "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "plays", "window": {"length": "7d"}},
        {"name": "ret", "role": "guardrail", "kind": "proportion", "direction": "increase",
         "measure": "active", "window": {"delay": "7d", "length": "1d"}, "margin": 0.01},
        {"name": "skips", "role": "guardrail", "kind": "ratio", "direction": "decrease",
         "numerator": "skips", "denominator": {"agg": "count", "types": ["play", "skip"]},
         "window": {"length": "7d"}, "margin": 0.05},
    ],
}


def spec_with(path: str, value: object) -> dict:
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: object = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    if value is KeyError:
        del node[last]  # type: ignore[union-attr]
    else:
        node[int(last) if isinstance(node, list) else last] = value  # type: ignore[index]
    return data


def test_shipped_spec_loads_with_the_promised_metrics():
    spec = load_spec(SPECS / "discovery_vs_bandit.yaml")
    assert {v.name: v.policy for v in spec.variants} == {"control": "popularity", "treatment": "linucb"}
    assert spec.control == "control"
    plays, ms, retention, skip_rate = spec.metrics
    assert (plays.name, plays.kind, plays.window.delay, plays.window.length) == ("plays_7d", "mean", 0, 7 * DAY)
    assert plays.measure.agg == "count" and plays.measure.types == ("play",)
    assert ms.covariate is not None and ms.covariate.length == 7 * DAY
    assert (retention.kind, retention.window.delay, retention.window.length) == ("proportion", 7 * DAY, DAY)
    assert retention.role == "guardrail" and retention.margin == 0.01
    assert (skip_rate.kind, skip_rate.direction, skip_rate.numerator.types) == ("ratio", "decrease", ("skip",))
    assert spec.lookback == 8 * DAY + 7 * DAY


def test_every_shipped_spec_is_valid():
    for path in SPECS.glob("*.yaml"):
        load_spec(path)


def test_json_round_trip_is_exact_and_canonical():
    spec = load_spec(SPECS / "discovery_vs_bandit.yaml")
    raw = spec_to_json(spec)
    again = spec_from_json(raw)
    assert again == spec
    assert spec_to_json(again) == raw


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("metrics.2.window.length", "0d", "metrics[2].window.length: must be positive"),
        ("metrics.0.window.delay", -5, "metrics[0].window.delay: must not be negative"),
        ("metrics.0.window.length", "7x", "metrics[0].window.length: '7x' is not a duration"),
        ("metrics.1.margin", KeyError, "metrics[1].margin: required for a guardrail"),
        ("metrics.0.margin", 0.1, "metrics[0].margin: only guardrails"),
        ("metrics.2.denominator", KeyError, "metrics[2].denominator: required for a ratio metric"),
        ("metrics.1.measure", "plays", "metrics[1].measure: a proportion metric needs a 0/1 measure"),
        ("metrics.0.measure", "bogus", "metrics[0].measure: unknown measure 'bogus'"),
        ("metrics.0.role", "primary", "metrics[0].role: Input should be 'success' or 'guardrail'"),
        ("metrics.0.colour", "red", "metrics[0].colour: Extra inputs are not permitted"),
        ("metrics.2.covariate", {"length": "7d"}, "metrics[2].covariate: CUPED is supported for mean"),
        ("control", "c", "control: 'c' is not one of the variants"),
        ("variants.1.weight", 0.4, "variants: weights must sum to 1"),
        ("variants.1.name", "a", "variants[1].name: duplicate variant 'a'"),
        ("variants.0.weight", "0.5", "variants[0].weight: Input should be a valid number"),
        ("end", "2025-01-01T00:00:00Z", "end: must be after start"),
        ("start", "2026-01-01T00:00:00", "start: 2026-01-01T00:00:00 must be UTC"),
        ("start", "2026-01-01T00:00:00+02:00", "must be UTC"),
        ("unit", "device", "unit: Input should be 'user'"),
        ("layer", {"name": "L", "buckets": [5000, 5000]}, "layer.buckets: need 0 <= lo < hi <= 10000"),
        ("layer", {"name": "L", "holdout": 1.0}, "layer.holdout: Input should be less than 1"),
        ("alpha", 0.7, "alpha: Input should be less than 0.5"),
        ("metrics", [], "metrics: Tuple should have at least 1 item"),
    ],
)
def test_errors_name_the_field(path, value, message):
    with pytest.raises(InvalidSpec) as info:
        parse_spec(spec_with(path, value))
    assert message in str(info.value)


def test_all_errors_are_reported_at_once():
    data = spec_with("metrics.2.window.length", "0d")
    data["control"] = "zzz"
    with pytest.raises(InvalidSpec) as info:
        parse_spec(data)
    assert "metrics[2].window.length: must be positive" in str(info.value)


def test_success_metric_is_required():
    data = copy.deepcopy(BASE)
    data["metrics"] = data["metrics"][1:]
    with pytest.raises(InvalidSpec, match="metrics: at least one success metric"):
        parse_spec(data)


def test_load_spec_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(InvalidSpec, match="bad.yaml: not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InvalidSpec, match="bad.yaml: experiment spec: expected a mapping"):
        load_spec(bad)


def test_spec_from_json_rejects_malformed_json():
    with pytest.raises(InvalidSpec, match="malformed JSON"):
        spec_from_json(b"{nope")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("7d", 7 * DAY), ("30m", 1_800_000), ("1h", 3_600_000), ("90s", 90_000), ("250ms", 250),
     ("1d12h", 36 * 3_600_000), ("2w", 14 * DAY), (0, 0), ("0d", 0)],
)
def test_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "1.5h", True, 1.5, None])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_instants_accept_iso_utc_and_milliseconds():
    assert parse_instant("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_instant("2026-01-01T00:00:00.250+00:00") == 1_767_225_600_250
    assert parse_instant(1_767_225_600_000) == 1_767_225_600_000
    with pytest.raises(ValueError, match="between 2000-01-01 and 2100-01-01"):
        parse_instant(1_767_225_600)  # seconds, not milliseconds
