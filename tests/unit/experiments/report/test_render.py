"""Reports: records -> engine input -> report; its JSON, table and PNGs."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.report.render import (
    VariantExposure,
    build_report,
    render_table,
    write_lift_over_time_png,
    write_lift_png,
)
from experiments.stats import analyse

SPEC = {
    "id": "exp-42", "control": "control", "variants": {"control": 0.5, "treatment": 0.5},
    "alpha": 0.05, "correction": "holm",
    "metrics": [
        {"name": "minutes", "kind": "mean", "role": "success", "direction": "increase",
         "non_inferiority_margin": None, "method": "welch"},
        {"name": "skip_rate", "kind": "ratio", "role": "guardrail", "direction": "decrease",
         "non_inferiority_margin": 0.05, "method": "z"},
        {"name": "retained", "kind": "proportion", "role": "guardrail", "direction": "increase",
         "non_inferiority_margin": 0.05, "method": None},
    ],
}


def _record(variant, metric, kind, x, y=None, pre=None, *, exposed, ts, in_progress=7):
    rec = {
        "v": 1, "record_id": f"{variant}-{metric}-{ts}", "experiment": "exp-42", "variant": variant,
        "metric": metric, "kind": kind, "role": "success", "n": len(x), "sum": float(x.sum()),
        "sum_sq": float((x * x).sum()), "den_sum": None, "den_sum_sq": None, "cross_sum": None,
        "pre_sum": None, "pre_sum_sq": None, "pre_cross_sum": None, "exposed": exposed,
        "in_progress": in_progress, "watermark_ts": ts, "late_records": 2, "multi_variant_users": 1,
    }
    if y is not None:
        rec.update(den_sum=float(y.sum()), den_sum_sq=float((y * y).sum()), cross_sum=float((x * y).sum()))
    if pre is not None:
        rec.update(pre_sum=float(pre.sum()), pre_sum_sq=float((pre * pre).sum()), pre_cross_sum=float((x * pre).sum()))
    return rec


def _records(seed=0, n=3000, ts=1_700_000_000_000, lift=0.05):
    rng = np.random.default_rng(seed)
    out = []
    for variant, eff in (("control", 0.0), ("treatment", lift)):
        pre = rng.gamma(2, 10, n)
        minutes = 0.8 * pre + rng.gamma(2, 5, n) * (1 + eff) + 0.8 * pre * eff
        plays = rng.poisson(20, n) + 1.0
        skips = rng.binomial(plays.astype(int), 0.3).astype(float)
        kept = (rng.random(n) < 0.4).astype(float)
        out += [
            _record(variant, "minutes", "mean", minutes, pre=pre, exposed=n + 10, ts=ts),
            _record(variant, "skip_rate", "ratio", skips, plays, exposed=n + 10, ts=ts),
            _record(variant, "retained", "proportion", kept, exposed=n + 10, ts=ts),
        ]
    return out


def test_build_report_runs_the_engine_on_the_newest_records():
    old = _records(seed=1, n=500, ts=1_600_000_000_000)
    other = [dict(r, experiment="exp-other", n=1) for r in _records(seed=2, n=50)]
    report = build_report(spec=SPEC, records=old + _records() + other)
    minutes = report.analysis.metrics[0]
    assert [v.n for v in minutes.variants] == [3000, 3000]
    assert [report.in_progress[("minutes", v.name)] for v in minutes.variants] == [7, 7]
    assert minutes.cuped is not None and minutes.variants[0].adjusted_mean is not None
    assert report.variants["treatment"] == VariantExposure(weight=0.5, exposed=3010, late_records=6,
                                                           multi_variant_users=1)
    assert report.analysis.srm.counts_from == "exposed" and report.analysis.srm.passed
    assert report.watermark_ts == 1_700_000_000_000
    assert report.analysis.decision.verdict in {"ship", "inconclusive"}
    assert report.analysis.metrics[0].comparisons[0].status == "better"


def test_report_json_is_the_engine_json_plus_the_counts():
    report = build_report(spec=SPEC, records=_records())
    doc = report.to_dict()
    assert doc == json.loads(json.dumps(doc, allow_nan=False))
    assert list(doc) == ["alpha", "control", "correction", "metrics", "srm", "sequential", "decision",
                         "decision_rule", "deterioration_alpha", "engine", "health",
                         "experiment", "watermark_ts", "variants"]
    engine = report.analysis.to_dict()
    for row, plain in zip(doc["metrics"][0]["variants"], engine["metrics"][0]["variants"], strict=True):
        assert row == plain | {"in_progress": 7}
    assert doc["variants"]["treatment"] == {"weight": 0.5, "exposed": 3010, "late_records": 6,
                                            "multi_variant_users": 1}
    assert "in_progress" not in engine["metrics"][0]["variants"][0]


def test_report_is_frozen():
    report = build_report(spec=SPEC, records=_records())
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.experiment = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.variants["control"].exposed = 0


def test_report_equals_the_engine_on_the_same_sufficient_statistics():
    recs = _records()
    report = build_report(spec=SPEC, records=recs)
    ratio = {r["variant"]: r for r in recs if r["metric"] == "skip_rate"}
    direct = analyse({"control": "control", "correction": "none", "metrics": [{
        "name": "skip_rate", "kind": "ratio", "role": "guardrail", "direction": "decrease",
        "non_inferiority_margin": 0.05,
        "variants": [{k: ratio[v][k] for k in ("n", "sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum")}
                     | {"name": v} for v in ("control", "treatment")]}]})
    got = report.analysis.metrics[1].comparisons[0]
    want = direct.metrics[0].comparisons[0]
    assert got.p_value == pytest.approx(want.p_value, rel=1e-12)
    assert got.relative.estimate == pytest.approx(want.relative.estimate, rel=1e-12)


def test_missing_records_give_an_inconclusive_report():
    recs = [r for r in _records() if r["variant"] == "control"]
    report = build_report(spec=SPEC, records=recs)
    assert report.analysis.decision.verdict == "inconclusive"
    assert report.analysis.metrics[0].comparisons[0].status == "insufficient_data"
    assert "treatment" in render_table(report)


def test_render_table_lists_every_metric_variant_and_the_verdict():
    text = render_table(build_report(spec=SPEC, records=_records()))
    for needle in ("minutes", "skip_rate", "retained", "control", "treatment", "in-progress", "verdict:", "adj p"):
        assert needle in text
    assert "3000" in text and "%" in text


def test_pngs_are_written(tmp_path):
    report = build_report(spec=SPEC, records=_records())
    write_lift_png(report, tmp_path / "lift.png")
    history = [(ts, build_report(spec=SPEC, records=_records(seed=s, n=n, ts=ts)))
               for s, (n, ts) in enumerate([(500, 1_700_000_000_000), (1500, 1_700_086_400_000),
                                            (3000, 1_700_172_800_000)])]
    write_lift_over_time_png(history, tmp_path / "over_time.png")
    for name in ("lift.png", "over_time.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
