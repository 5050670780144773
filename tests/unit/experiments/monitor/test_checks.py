"""The automatic stop: harm stops an experiment mid-run; A/A replicates stop within the alpha bound."""

from __future__ import annotations

import json

from scipy import stats

from experiments.monitor import combine, evaluate, newest_per_key
from experiments.spec import parse_spec, spec_to_json
from tests.unit.experiments.monitor.builders import guarded_spec, looks

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
