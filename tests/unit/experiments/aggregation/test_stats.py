"""Readers sum per-partition partials exactly, whatever the split of users over partitions."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.aggregation.stats import SufficientStats, merge_partials, metric_record
from experiments.aggregation.windows import Contribution
from experiments.spec import parse_spec

SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": 1_767_225_600_000, "end": 1_767_225_700_000, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [{"name": "ms", "role": "success", "kind": "mean", "direction": "increase",
                 "measure": "ms_played", "window": {"length": "10s"}, "covariate": {"length": "5s"}}],
})


def record(stats: SufficientStats, *, partition: int | None, watermark: int = 5, late: int = 1) -> dict:
    return metric_record(experiment="exp", variant="a", metric=SPEC.metrics[0], stats=stats,
                         exposed=stats.n, watermark_ts=watermark, late_records=late,
                         multi_variant_users=0, partition=partition)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), min_size=1, max_size=60),
       parts=st.integers(1, 6), seed=st.integers(0, 1000))
def test_the_sum_of_partials_equals_one_process_exactly(values, parts, seed):
    whole = SufficientStats()
    split = [SufficientStats() for _ in range(parts)]
    rng = random.Random(seed)
    for y, pre in values:  # squares of ms pass 2**53: float sums depend on their order
        whole.add(Contribution(float(y), None, float(pre)))
        split[rng.randrange(parts)].add(Contribution(float(y), None, float(pre)))
    partials = [record(s, partition=p, watermark=10 + p) for p, s in enumerate(split)]
    rng.shuffle(partials)
    (total,) = merge_partials(partials)
    # late records are counted per partition and added; the slowest partition's watermark
    assert total == record(whole, partition=None, watermark=10, late=parts)


def test_the_newest_record_of_each_partition_counts_and_a_total_passes_through():
    old, new = SufficientStats(), SufficientStats()
    old.add(Contribution(1.0, None, 0.0))
    for y in (2.0, 3.0):
        new.add(Contribution(y, None, 0.0))
    other = SufficientStats()
    other.add(Contribution(10.0, None, 0.0))
    (total,) = merge_partials([record(old, partition=0), record(other, partition=1), record(new, partition=0)])
    assert (total["n"], total["sum"], total["sum_sq"]) == (3, 15.0, 113.0)
    single = record(old, partition=None)
    assert merge_partials([single]) == [single]
