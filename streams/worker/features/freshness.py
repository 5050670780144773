"""Freshness: how long after its publish an event's effect is readable in the online store.

A sample is ``wall clock when the Feast write returned - the record's Kafka timestamp``
(CreateTime, set by the producer), in ms. Wall clock is right here: it is a latency, not
an event-time window. Only the newest ``capacity`` samples are kept, so the percentiles
describe recent behaviour and memory stays bounded; ``histogram`` counts every sample
ever added, in seconds, for Prometheus.

>>> tracker = FreshnessTracker(capacity=100)
>>> tracker.add_many([10.0, 20.0, 30.0, 40.0])
>>> tracker.percentile(50), tracker.count
(25.0, 4)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from infra.metrics import FRESHNESS_BUCKETS, Histogram


class FreshnessTracker:
    """Publish-to-readable latencies in ms; p50/p99 over the newest ``capacity`` samples.

    ``histogram=False`` keeps the samples only (the per-stage trackers of the batcher)."""

    def __init__(self, *, capacity: int = 20_000, histogram: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        self._samples: deque[float] = deque(maxlen=capacity)
        self.count = 0  # every sample ever added, not only the kept ones
        self._with_histogram = histogram
        self.histogram = Histogram(FRESHNESS_BUCKETS)  # every sample ever added, seconds

    def add(self, latency_ms: float) -> None:
        self.add_many((latency_ms,))

    def add_many(self, latencies_ms: Iterable[float]) -> None:
        if not self._with_histogram:
            batch = list(latencies_ms)
            self._samples.extend(batch)
            self.count += len(batch)
            return
        observe = self.histogram.observe
        for latency in latencies_ms:
            self._samples.append(latency)
            observe(latency / 1000.0)
            self.count += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100, linear interpolation), None without samples."""
        return self.percentiles(q)[0]

    def percentiles(self, *qs: float) -> list[float | None]:
        """Several percentiles from one sort of the samples (the status writer asks for three,
        several times a second: a sort per percentile was a few % of the worker's CPU)."""
        for q in qs:
            if not 0 <= q <= 100:
                raise ValueError(f"q: must be within [0, 100], got {q}")
        if not self._samples:
            return [None] * len(qs)
        ordered = sorted(self._samples)
        out: list[float | None] = []
        for q in qs:
            rank = (len(ordered) - 1) * q / 100
            low = int(rank)
            high = min(low + 1, len(ordered) - 1)
            out.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
        return out

    def summary(self) -> dict[str, float | int | None]:
        p50, p99, p999 = self.percentiles(50, 99, 99.9)
        return {
            "freshness_p50_ms": p50,
            "freshness_p99_ms": p99,
            "freshness_p999_ms": p999,
            "freshness_samples": self.count,
        }

    def reset(self) -> None:
        self._samples.clear()
        self.count = 0
        self.histogram = Histogram(FRESHNESS_BUCKETS)
