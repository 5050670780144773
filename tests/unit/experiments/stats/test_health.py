"""Health checks: typed, with a status and a message, beside the statistics; a failed one blocks the decision."""

import json
import pathlib

import numpy as np
import pytest
from scipy import stats

from experiments.stats import HealthCheck, analyse
from tests.unit.experiments.stats.builders import mean_variant

EXAMPLE = pathlib.Path(__file__).resolve().parents[4] / "examples" / "stats_input.json"


def _checks(out):
    return {h.name: h for h in out.health}


def _simple(c_sum=1000, t_sum=1100, n=10_000, **extra):
    return {"control": "c", **extra, "metrics": [{"name": "conv", "kind": "proportion", "role": "success",
            "variants": [{"name": "c", "n": n, "sum": c_sum}, {"name": "t", "n": n, "sum": t_sum}]}]}


def test_every_check_is_reported_typed_and_in_the_json():
    out = analyse(json.loads(EXAMPLE.read_text()))
    names = [h.name for h in out.health]
    assert names == ["srm_chi_square", "srm_anytime_valid", "multiple_exposures", "pre_period_imbalance",
                     "large_uplift", "too_little_data", "late_records"]
    assert all(isinstance(h, HealthCheck) and h.status in {"ok", "warning", "failed", "not_checked"} and h.message
               for h in out.health)
    assert out.to_dict()["health"][0] == {"name": "srm_chi_square", "status": "ok",
                                          "message": out.health[0].message, "value": out.srm.p_value}


def test_srm_reports_both_tests_and_the_deciding_one_fails():
    out = analyse(_simple(exposed={"c": 10000, "t": 10600}))
    checks = _checks(out)
    assert out.srm.test == "chi_square" and checks["srm_chi_square"].status == "failed"
    assert checks["srm_anytime_valid"].value == pytest.approx(out.srm.anytime_p_value)
    assert out.decision.verdict == "inconclusive"
    live = analyse(_simple(exposed={"c": 10000, "t": 10600}, srm_test="anytime_valid"))
    assert live.srm.test == "anytime_valid" and _checks(live)["srm_anytime_valid"].status == (
        "failed" if live.srm.anytime_p_value < 0.001 else "ok")


def test_multiple_exposures_and_late_records_thresholds():
    ok = _checks(analyse(_simple(health={"multiple_exposures": 0, "late_records": 10, "records": 10_000})))
    assert ok["multiple_exposures"].status == "ok" and ok["late_records"].status == "ok"
    warn = _checks(analyse(_simple(health={"multiple_exposures": 50, "late_records": 500, "records": 10_000})))
    assert warn["multiple_exposures"].status == "warning" and warn["late_records"].status == "warning"
    assert warn["late_records"].value == pytest.approx(0.05)
    bad = analyse(_simple(health={"multiple_exposures": 1000, "late_records": 2000, "records": 10_000}))
    assert _checks(bad)["multiple_exposures"].status == "failed" and _checks(bad)["late_records"].status == "failed"
    assert bad.decision.verdict == "inconclusive" and len(bad.decision.reasons) == 2
    assert _checks(analyse(_simple()))["late_records"].status == "not_checked"


def test_pre_period_imbalance_of_the_cuped_covariate():
    rng = np.random.default_rng(71)
    balanced, shifted = [], []
    for name, pre_shift in (("c", 0.0), ("t", 1.0)):
        pre = rng.normal(20, 5, 3000)
        y = pre + rng.normal(0, 2, 3000)
        balanced.append(mean_variant(name, y, pre))
        shifted.append(mean_variant(name, y, pre + pre_shift))
    for variants, status in ((balanced, "ok"), (shifted, "warning")):
        data = {"control": "c", "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": variants}]}
        check = _checks(analyse(data))["pre_period_imbalance"]
        assert check.status == status, check
    x = shifted[1]
    c = shifted[0]
    z = (x["pre_sum"] / 3000 - c["pre_sum"] / 3000) / np.sqrt(
        sum((v["pre_sum_sq"] - v["pre_sum"] ** 2 / 3000) / 2999 / 3000 for v in (x, c)))
    assert check.value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert _checks(analyse(_simple()))["pre_period_imbalance"].status == "not_checked"


def test_large_uplift_and_too_little_data_warn():
    assert _checks(analyse(_simple()))["large_uplift"].status == "ok"
    big = _checks(analyse(_simple(t_sum=2500)))["large_uplift"]
    assert big.status == "warning" and big.value == pytest.approx(1.5)
    thin = {"control": "c", "metrics": [{"name": "m", "kind": "mean", "role": "success", "variants": [
        {"name": "c", "n": 1, "sum": 1.0, "sum_sq": 1.0}, {"name": "t", "n": 1, "sum": 2.0, "sum_sq": 4.0}]}]}
    check = _checks(analyse(thin))["too_little_data"]
    assert check.status == "warning" and "m/t" in check.message
