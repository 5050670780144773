"""Reading the stream's figures: newest record per key, per-partition partials summed."""

from __future__ import annotations

import json

import pytest

from experiments.batch.errors import BatchError
from experiments.batch.stream import stream_figures


def record(variant: str, metric: str, n: int, total: float, watermark: int, **extra: object) -> bytes:
    return json.dumps({"experiment": "exp", "variant": variant, "metric": metric, "kind": "mean",
                       "role": "success", "n": n, "sum": total, "sum_sq": total * 2, "den_sum": None,
                       "den_sum_sq": None, "cross_sum": None, "pre_sum": None, "pre_sum_sq": None,
                       "pre_cross_sum": None, "exposed": n + 1, "watermark_ts": watermark, "late_records": 0,
                       "multi_variant_users": 0, **extra}).encode()


def test_the_newest_record_of_a_key_counts() -> None:
    figures = stream_figures([
        (b"exp/a/m", record("a", "m", 1, 1.0, 100)),
        (b"other/a/m", record("a", "m", 9, 9.0, 100)),
        (b"exp/a/m", record("a", "m", 2, 5.0, 200)),
    ], "exp")
    figure = figures[("a", "m")]
    assert (figure.stats.n, figure.stats.sum, figure.stats.exposed, figure.stats.pre_sum) == (2, 5.0, 3, None)
    assert figure.closed_upto(50) == 150


def test_per_partition_partials_are_summed_each_with_its_own_cut() -> None:
    figures = stream_figures([
        (b"exp/a/m/0", record("a", "m", 1, 1.0, 100)),
        (b"exp/a/m/1", record("a", "m", 4, 2.5, 300)),
        (b"exp/a/m/0", record("a", "m", 2, 3.0, 200)),
    ], "exp")
    figure = figures[("a", "m")]
    assert (figure.stats.n, figure.stats.sum, figure.stats.sum_sq, figure.stats.exposed) == (6, 5.5, 11.0, 8)
    assert figure.closed_upto(50) == {0: 150, 1: 250}


def test_a_key_of_another_shape_is_named() -> None:
    with pytest.raises(BatchError, match="key: 'exp/a' is neither"):
        stream_figures([(b"exp/a", record("a", "m", 1, 1.0, 1))], "exp")
