"""The file interface: documented JSON on good input, exit code 2 and a field-naming message on bad input."""

import copy
import io
import json
import pathlib

import pytest

from experiments.stats import analyse
from experiments.stats.cli import run_stats

EXAMPLE = pathlib.Path(__file__).resolve().parents[4] / "examples" / "stats_input.json"
EXPECTED_EXAMPLE_OUTPUT = pathlib.Path(__file__).with_name("expected_example_output.json")


def _run(tmp_path, data, raw=None):
    path = tmp_path / "in.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    out, err = io.StringIO(), io.StringIO()
    return run_stats(str(path), out=out, err=err), out.getvalue(), err.getvalue()


def test_good_file_gives_json_and_exit_zero(tmp_path):
    code, out, err = _run(tmp_path, json.loads(EXAMPLE.read_text()))
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["decision"]["verdict"] in {"ship", "do_not_ship", "inconclusive"}
    assert result["metrics"][0]["comparisons"][0]["variant"] == "treatment"


def test_example_output_equals_the_stored_json():
    out, err = io.StringIO(), io.StringIO()
    assert run_stats(str(EXAMPLE), out=out, err=err) == 0
    assert out.getvalue() == EXPECTED_EXAMPLE_OUTPUT.read_text()


def test_stdin_dash():
    out, err = io.StringIO(), io.StringIO()
    assert run_stats("-", out=out, err=err, stdin=io.StringIO(EXAMPLE.read_text())) == 0
    assert "decision" in json.loads(out.getvalue())


def _bad(mutate):
    data = json.loads(EXAMPLE.read_text())
    mutate(data)
    return data


def _set(path, value):
    def mutate(d):
        *head, last = path
        for p in head:
            d = d[p]
        d[last] = value
    return mutate


BAD = [
    (_set(["metrics", 1, "variants", 0, "n"], -5), "metrics[1].variants[0].n: must be >= 0"),
    (_set(["metrics", 0, "variants", 1, "sum_sq"], 1.0), "metrics[0].variants[1].sum_sq: inconsistent with sum and n"),
    (_set(["control"], "baseline"), "control: unknown control 'baseline'"),
    (lambda d: d["metrics"][2]["variants"][0].pop("den_sum"),
     "metrics[2].variants[0].den_sum: required for kind 'ratio'"),
    (lambda d: d["metrics"][0].pop("kind"), "metrics[0].kind: required field is missing"),
    (lambda d: d.pop("metrics"), "metrics: required field is missing"),
    (_set(["metrics", 0, "variants", 0, "colour"], "red"), "metrics[0].variants[0].colour: unknown field"),
    (_set(["metrics", 0, "kind"], "median"), "metrics[0].kind: must be one of"),
    (_set(["metrics", 0, "variants", 0, "n"], 10.5), "metrics[0].variants[0].n: must be an integer"),
    (_set(["metrics", 1, "variants", 0, "sum"], 30000), "metrics[1].variants[0].sum: a proportion needs 0 <= sum <= n"),
    (_set(["alpha"], 0.7), "alpha: must be < 0.5"),
    (_set(["correction"], "sidak"), "correction: must be one of"),
    (_set(["expected_weights"], {"control": 1}), "expected_weights: no weight for variant 'treatment'"),
    (_set(["sequential"], {"method": "group_sequential"}), "sequential.information_fraction: required"),
    (_set(["sequential"], {"method": "group_sequential", "information_fraction": 0.5, "looks": [0.4, 0.3]}),
     "sequential.looks: must be strictly increasing"),
    (_set(["sequential"], {"method": "always_valid", "looks": [0.3]}), "sequential.looks: only for method"),
    (lambda d: d["metrics"][0]["variants"][1].pop("pre_cross_sum"),
     "metrics[0].variants[1].pre_cross_sum: required when any pre_* field is given"),
    (_set(["sequential"], {"method": "group_sequential", "information_fraction": 0.5, "rho": 3}),
     'sequential.rho: only with "spending": "power"'),
    (_set(["sequential"], {"method": "group_sequential", "information_fraction": 0.5, "spending": "obrien_fleming",
                           "rho": 3}), 'sequential.rho: only with "spending": "power"'),
    (_set(["sequential"], {"method": "group_sequential", "information_fraction": 0.5, "spending": "pocock"}),
     "sequential.spending: must be one of"),
    (_set(["sequential"], {"method": "always_valid", "spending": "power"}), "sequential.spending: only for method"),
    (lambda d: d.update(engine="bayesian", sequential={"method": "always_valid"}),
     "sequential: not available with engine 'bayesian'"),
    (_set(["engine"], "bootstrap"), "engine: must be one of"),
    (_set(["deterioration_alpha"], 0.5), "deterioration_alpha: must be < 0.5"),
    (_set(["deterioration_alpha"], 0.0), "deterioration_alpha: must be > 0"),
    (_set(["deterioration_alpha"], -0.1), "deterioration_alpha: must be > 0"),
    (lambda d: d.update(decision_rule="all_metrics_corrected", deterioration_alpha=0.01),
     "deterioration_alpha: only for decision_rule 'risk_aware'"),
    (_set(["decision_rule"], "majority"), "decision_rule: must be one of"),
    (_set(["power"], 1.0), "power: must be < 1"),
    (_set(["health"], {"late_records": 5}), "health.records: required when health.late_records is given"),
    (_set(["health"], {"late_records": 5, "records": 4}), "health.late_records: must be <= health.records"),
    (_set(["health"], {"multiple_exposures": -1}), "health.multiple_exposures: must be >= 0"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_exits_2_naming_the_field(tmp_path, mutate, message):
    code, out, err = _run(tmp_path, _bad(copy.deepcopy(mutate)))
    assert code == 2 and out == ""
    assert message in err


def test_invalid_json_and_missing_file(tmp_path):
    code, _, err = _run(tmp_path, None, raw='{"alpha": NaN}')
    assert code == 2 and "invalid JSON" in err
    code, _, err = _run(tmp_path, None, raw="[1, 2]")
    assert code == 2 and "input must be a JSON object" in err
    out, err_buf = io.StringIO(), io.StringIO()
    assert run_stats(str(tmp_path / "nope.json"), out=out, err=err_buf) == 2
    assert "cannot read" in err_buf.getvalue()


EXAMPLES = EXAMPLE.parent


@pytest.mark.parametrize(("name", "rule", "engine", "verdict"), [
    ("stats_risk_aware", "risk_aware", "frequentist", "ship"),
    ("stats_all_metrics_corrected", "all_metrics_corrected", "frequentist", "inconclusive"),
    ("stats_bayesian", "risk_aware", "bayesian", "ship"),
    ("stats_group_sequential_power", "risk_aware", "frequentist", "ship"),
    ("stats_always_valid", "risk_aware", "frequentist", "ship"),
])
def test_every_example_runs_through_the_command(name, rule, engine, verdict):
    out, err = io.StringIO(), io.StringIO()
    assert run_stats(str(EXAMPLES / f"{name}.json"), out=out, err=err) == 0, err.getvalue()
    doc = json.loads(out.getvalue())
    assert (doc["decision_rule"], doc["engine"], doc["decision"]["verdict"]) == (rule, engine, verdict)
    assert all(c["tests"] for m in doc["metrics"] for c in m["comparisons"])


def _contains(earlier, now, path="$"):
    """Every field of ``earlier`` is in ``now`` with the same value (new fields may be added)."""
    if isinstance(earlier, dict):
        assert isinstance(now, dict), path
        for key, value in earlier.items():
            assert key in now, f"{path}.{key} missing"
            _contains(value, now[key], f"{path}.{key}")
    elif isinstance(earlier, list):
        assert isinstance(now, list) and len(now) == len(earlier), path
        for k, (a, b) in enumerate(zip(earlier, now, strict=True)):
            _contains(a, b, f"{path}[{k}]")
    else:
        assert earlier == now, f"{path}: {earlier!r} != {now!r}"


def test_the_earlier_rule_keeps_every_earlier_field_and_value():
    # the output of this example before the risk-aware rule became the default (stored then)
    earlier = json.loads((pathlib.Path(__file__).parent / "expected_example_output_before_issue_18.json").read_text())
    data = json.loads(EXAMPLE.read_text()) | {"decision_rule": "all_metrics_corrected"}
    now = json.loads(json.dumps(analyse(data).to_dict()))
    _contains(earlier, now)
    assert set(now) - set(earlier) == {"decision_rule", "deterioration_alpha", "engine", "health"}
