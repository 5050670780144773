"""What the serving API counts per request; ``ServingService.metrics_families`` describes it
(and the rest, read from the components at scrape time) for ``prometheus_client``.

>>> m = ServingMetrics()
>>> m.request_done("/recommend", 200, 0.002)
>>> m.requests[("/recommend", 200)], m.latency.count
(1, 1)
"""

from __future__ import annotations

from collections import Counter

from infra.metrics import LATENCY_BUCKETS, Histogram

__all__ = ["LATENCY_BUCKETS", "Histogram", "ServingMetrics"]


class ServingMetrics:
    """What the HTTP adapter records per request; the rest is read from the components at scrape time."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status)
        self.latency = Histogram()  # POST /recommend, seconds

    def request_done(self, route: str, status: int, seconds: float | None) -> None:
        self.requests[(route, status)] += 1
        if seconds is not None:
            self.latency.observe(seconds)
