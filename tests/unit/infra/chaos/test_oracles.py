"""Comparing a worker's output with its oracle."""

from __future__ import annotations

from infra.chaos.oracles import comparable_metrics, differences


def test_differences_name_missing_unexpected_and_changed_fields() -> None:
    expected = {"a": {"n": 3, "sum": 1.5}, "b": {"n": 1}}
    actual = {"a": {"n": 4, "sum": 1.5}, "c": {"n": 1}}
    assert differences(actual, expected) == ["a.n: 4 != expected 3", "b: missing", "c: unexpected"]
    assert differences(expected, expected) == []


def test_metric_records_compare_without_what_depends_on_partitions() -> None:
    record = {"experiment": "e", "variant": "a", "metric": "m", "n": 2, "record_id": "r1", "watermark_ts": 5,
              "partition": 3}
    assert comparable_metrics([record]) == {"e/a/m": {"experiment": "e", "variant": "a", "metric": "m", "n": 2}}
