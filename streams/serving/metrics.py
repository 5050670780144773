"""Counters and latency histograms, rendered in the Prometheus text format (0.0.4).

>>> h = Histogram((0.001, 0.01))
>>> h.observe(0.002)
>>> print("\\n".join(h.lines("x_seconds", "")))
x_seconds_bucket{le="0.001"} 0
x_seconds_bucket{le="0.01"} 1
x_seconds_bucket{le="+Inf"} 1
x_seconds_sum 0.002
x_seconds_count 1
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping

#: Request latency buckets, in seconds (0.5 ms .. 2.5 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """A cumulative histogram; ``observe`` is O(log buckets) and allocation-free."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {self.total:.6g}")
        out.append(f"{name}_count{suffix} {self.count}")
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**pairs: object) -> str:
    return ",".join(f'{key}="{_escape(str(value))}"' for key, value in pairs.items())


class TextBuilder:
    """Builds one exposition: a ``# HELP`` and ``# TYPE`` line per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> TextBuilder:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        return self

    def sample(self, name: str, value: float, **pairs: object) -> TextBuilder:
        text = labels(**pairs)
        self._lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
        return self

    def counter(self, name: str, help_text: str, values: Mapping[str, float] | Counter[str], label: str) -> None:
        self.family(name, "counter", help_text)
        for key, value in sorted(values.items()):
            self.sample(name, value, **{label: key})

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        self.family(name, "histogram", help_text)
        self._lines += histogram.lines(name, "")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


class ServingMetrics:
    """What the HTTP adapter records per request; the rest is read from the components at render time."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status)
        self.latency = Histogram()  # POST /recommend, seconds

    def request_done(self, route: str, status: int, seconds: float | None) -> None:
        self.requests[(route, status)] += 1
        if seconds is not None:
            self.latency.observe(seconds)
