"""The demo waits for every metric window as long as the aggregator moves, and no longer."""

from __future__ import annotations

from typing import Any

import pytest

from infra.demo.run import wait_for_windows


def totals(n: int, in_progress: int, watermark: int) -> list[dict[str, Any]]:
    return [{"experiment": "exp", "variant": v, "metric": "plays", "n": n, "in_progress": in_progress,
             "watermark_ts": watermark} for v in ("control", "treatment")]


def test_the_wait_outlasts_the_stall_limit_while_records_change():
    reads = iter([totals(k, 20 - k, 1_000 * k) for k in range(20)] + [totals(20, 0, 20_000)])
    seen = []

    def read() -> list[dict[str, Any]]:
        seen.append(next(reads))
        return seen[-1]

    # 21 reads 10 ms apart take far longer than the 25 ms stall limit: each one moved
    wait_for_windows(read, ["exp"], stall_s=0.025, interval_s=0.01)
    assert len(seen) == 21


def test_the_wait_fails_once_no_record_changed_for_the_stall_limit():
    reads = 0

    def read() -> list[dict[str, Any]]:
        nonlocal reads
        reads += 1
        return totals(5, 3, 7_000)

    with pytest.raises(TimeoutError, match="no metric record changed"):
        wait_for_windows(read, ["exp"], stall_s=0.05, interval_s=0.01)
    assert reads >= 2  # a first read, and one that saw nothing move


def test_an_experiment_without_records_is_not_closed():
    reads = iter([[], [], totals(4, 0, 9_000)])
    wait_for_windows(lambda: next(reads), ["exp"], stall_s=60.0, interval_s=0.001)
    with pytest.raises(StopIteration):
        next(reads)
