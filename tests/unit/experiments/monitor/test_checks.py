"""The automatic stop: harm stops an experiment mid-run; A/A replicates stop within the alpha bound."""

from __future__ import annotations

import json
import random
from typing import Any

from scipy import stats

from experiments.aggregation.stats import SufficientStats, metric_record
from experiments.aggregation.windows import Contribution
from experiments.monitor import combine, evaluate, newest_per_key
from experiments.spec import parse_spec, spec_to_json
from tests.unit.experiments.monitor.builders import DAY_MS, guarded_spec, looks

LOOKS = 12
USERS_PER_LOOK = 150


def first_stop(spec, *, seed: int, retention: dict[str, float], partitions: int = 1) -> int | None:
    """The look at which the monitor stops the experiment, or None."""
    seen: list = []
    for number, published in enumerate(looks(spec, seed=seed, retention=retention, users_per_look=USERS_PER_LOOK,
                                             count=LOOKS, partitions=partitions)):
        seen += published
        verdict = evaluate(spec, list(combine(newest_per_key(seen)).values()))
        if verdict.stop:
            return number
    return None


def allowed_false_stops(replicates: int, rate: float) -> int:
    """The largest count a binomial(replicates, rate) exceeds with probability below 1e-5."""
    return int(stats.binom.isf(1e-5, replicates, rate))


def test_a_harmful_treatment_is_stopped_mid_run_with_the_guardrail_named() -> None:
    spec = guarded_spec()
    for seed in range(20):
        stopped_at = first_stop(spec, seed=seed, retention={"control": 0.6, "treatment": 0.35})
        assert stopped_at is not None and stopped_at < LOOKS - 1, seed
    seen: list = []
    for published in looks(spec, seed=0, retention={"control": 0.6, "treatment": 0.35}, users_per_look=150, count=6):
        seen += published
    verdict = evaluate(spec, list(combine(newest_per_key(seen)).values()))
    assert verdict.stop and "retention_d7 is significantly worse in treatment" in verdict.reason


def test_a_strong_harm_is_missed_with_probability_below_1e_4() -> None:
    """The chance computation of ``tests/integration/test_auto_stop.py``: at one look with 100 closed
    users per arm, retention 0.8 in control against 0.3 in treatment, P(the monitor does not stop) is
    summed exactly over the binomial outcomes (counts more than 5 standard deviations out count as
    misses). A treatment retained by nobody is a miss too: its variance is 0 and the engine calls the
    comparison ``insufficient_data``."""
    spec = guarded_spec()
    n, control, treatment = 100, stats.binom(100, 0.8), stats.binom(100, 0.3)

    def window(dist: Any) -> range:
        sd = dist.std()
        return range(max(0, int(dist.mean() - 5 * sd)), min(n, int(dist.mean() + 5 * sd)) + 1)

    def stops(c: int, t: int) -> bool:
        records = []
        for variant, retained in (("control", c), ("treatment", t)):
            base = {"experiment": spec.id, "variant": variant, "n": n, "exposed": n, "in_progress": 0,
                    "watermark_ts": spec.start + DAY_MS, "late_records": 0, "multi_variant_users": 0}
            records += [{**base, "metric": "retention_d7", "kind": "proportion", "role": "guardrail",
                         "sum": float(retained), "sum_sq": float(retained)},
                        {**base, "metric": "plays_7d", "kind": "mean", "role": "success",
                         "sum": 3.0 * n, "sum_sq": 11.0 * n}]
        return evaluate(spec, records).stop

    cs, ts = window(control), window(treatment)
    covered = control.pmf(list(cs)).sum() * treatment.pmf(list(ts)).sum()
    missed = 1.0 - covered + sum(control.pmf(c) * treatment.pmf(t) for c in cs for t in ts if not stops(c, t))
    assert missed < 1e-4, missed  # 1.7e-05
    assert not stops(80, 0)  # the degenerate case named above


def test_a_a_replicates_are_stopped_no_more_often_than_alpha_allows() -> None:
    spec = guarded_spec()
    replicates = 120
    stops = sum(first_stop(spec, seed=1000 + seed, retention={"control": 0.5, "treatment": 0.5}) is not None
                for seed in range(replicates))
    # Both checks hold their level at every look at once: alpha for the guardrail, 0.001 for SRM.
    assert stops <= allowed_false_stops(replicates, spec.alpha + 0.001)


def test_partials_per_partition_give_the_same_verdict_as_one_record() -> None:
    spec = guarded_spec()
    retention = {"control": 0.6, "treatment": 0.35}
    assert first_stop(spec, seed=3, retention=retention) == first_stop(spec, seed=3, retention=retention,
                                                                        partitions=3)


def test_the_aggregators_partials_with_their_terms_sum_to_the_totals_the_checks_read() -> None:
    """The aggregator's partials carry ``partition`` and exact ``terms``; their total must not keep
    them, or the report built on it would merge it again and take one partition's sums for all."""
    spec = guarded_spec()
    rng = random.Random(5)
    partials, totals = [], {}
    for variant, rate in (("control", 0.85), ("treatment", 0.2)):
        for metric in spec.metrics:
            whole = SufficientStats()
            for part in range(4):
                stats = SufficientStats()
                for _ in range(30):
                    value = float(rng.random() < rate) if metric.kind == "proportion" else float(rng.randrange(9))
                    stats.add(Contribution(value, None, None))
                    whole.add(Contribution(value, None, None))
                partials.append((f"{spec.id}/{variant}/{metric.name}/{part}", metric_record(
                    experiment=spec.id, variant=variant, metric=metric, stats=stats, exposed=30,
                    watermark_ts=spec.start + DAY_MS + part, late_records=0, multi_variant_users=0, partition=part)))
            totals[(variant, metric.name)] = metric_record(
                experiment=spec.id, variant=variant, metric=metric, stats=whole, exposed=120,
                watermark_ts=spec.start + DAY_MS, late_records=0, multi_variant_users=0)
    combined = list(combine(newest_per_key(partials)).values())
    assert {(r["variant"], r["metric"]): (r["n"], r["sum"], r["sum_sq"], r["watermark_ts"]) for r in combined} == {
        key: (r["n"], r["sum"], r["sum_sq"], r["watermark_ts"]) for key, r in totals.items()}
    assert all("terms" not in r and "partition" not in r for r in combined)
    from_partials, from_totals = evaluate(spec, combined), evaluate(spec, list(totals.values()))
    assert from_partials.stop and from_partials.reason == from_totals.reason


def test_a_sample_ratio_mismatch_stops_the_experiment() -> None:
    spec = guarded_spec()
    (published,) = looks(spec, seed=1, retention={"control": 0.5, "treatment": 0.5}, users_per_look=1000, count=1)
    records = [dict(r, exposed=r["exposed"] * (13 if r["variant"] == "treatment" else 10) // 10)
               for _, r in published]
    verdict = evaluate(spec, records)
    assert verdict.stop and "srm: sample ratio mismatch" in verdict.reason
    assert evaluate(spec, [r for _, r in published]).stop is False


def test_a_spec_without_guardrails_is_checked_for_srm_only() -> None:
    data = json.loads(spec_to_json(guarded_spec()))
    data["metrics"] = data["metrics"][:1]
    spec = parse_spec(data)
    (published,) = looks(spec, seed=1, retention={}, users_per_look=50, count=1)
    checks = {c.name: c for c in evaluate(spec, [r for _, r in published]).checks}
    assert checks["guardrails"].status == "ok" and checks["srm"].status == "ok"


def test_a_variant_whose_records_are_not_read_yet_is_not_a_sample_ratio_mismatch() -> None:
    """Regression: the console read one variant's records of an update before the other's, judged the
    other as 0 exposed and stopped a healthy experiment (srm: split control 200, treatment 0)."""
    spec = guarded_spec()
    (published,) = looks(spec, seed=1, retention={"control": 0.6, "treatment": 0.6}, users_per_look=200, count=1)
    records = [r for _, r in published]
    control_only = [r for r in records if r["variant"] == "control"]
    assert control_only and len(control_only) < len(records)
    verdict = evaluate(spec, control_only)
    checks = {c.name: c for c in verdict.checks}
    assert not verdict.stop and checks["srm"].status == "ok" and "treatment" in checks["srm"].detail
    assert evaluate(spec, records).stop is False
