"""The freshness tracker: percentiles over the newest samples."""

from __future__ import annotations

import numpy as np
import pytest

from streams.worker.features.freshness import FreshnessTracker


def test_percentiles_match_numpy_linear_interpolation() -> None:
    rng = np.random.default_rng(1)
    values = rng.exponential(100.0, size=1001).tolist()
    tracker = FreshnessTracker(capacity=5000)
    tracker.add_many(values)
    for q in (0, 50, 99, 100):
        assert tracker.percentile(q) == pytest.approx(float(np.percentile(values, q)))


def test_only_the_newest_samples_are_kept_but_all_are_counted() -> None:
    tracker = FreshnessTracker(capacity=3)
    tracker.add_many([1000.0, 1000.0, 1.0, 2.0, 3.0])
    assert tracker.percentile(100) == 3.0 and tracker.count == 5
    assert tracker.summary()["freshness_p50_ms"] == 2.0


def test_empty_and_invalid() -> None:
    tracker = FreshnessTracker()
    assert tracker.percentile(50) is None
    with pytest.raises(ValueError):
        tracker.percentile(101)
    with pytest.raises(ValueError):
        FreshnessTracker(capacity=0)
