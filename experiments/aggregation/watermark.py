"""Event-time watermark over input partitions.

The watermark is the minimum over input partitions of the newest event time seen there,
so one fast partition cannot close windows for the others. It is kept monotone: a partition
seen for the first time cannot reopen windows that were already closed (declare the
partitions up front with ``declare`` to hold the watermark back until each has data).
Windows ending at or before ``closed_upto = watermark - allowed_lateness`` are closed.

>>> w = WatermarkTracker(allowed_lateness_ms=10)
>>> w.declare(("events", 0)); w.declare(("events", 1))
>>> w.observe(("events", 0), 100); w.watermark is None
True
>>> w.observe(("events", 1), 50)
>>> w.watermark, w.closed_upto
(50, 40)
>>> w.observe(("events", 1), 500); w.watermark
100
"""

from __future__ import annotations

Partition = tuple[str, int]


class WatermarkTracker:
    def __init__(self, *, allowed_lateness_ms: int) -> None:
        if allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms: must not be negative")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.partitions: dict[Partition, int | None] = {}
        self._high: int | None = None

    def declare(self, partition: Partition) -> None:
        """Take part in the watermark before the partition delivers anything."""
        self.partitions.setdefault(partition, None)

    def restore(self, partitions: dict[Partition, int | None], watermark: int | None) -> None:
        self.partitions = dict(partitions)
        self._high = watermark

    def observe(self, partition: Partition, ts: int) -> None:
        seen = self.partitions.get(partition)
        if seen is not None and ts <= seen:
            return
        self.partitions[partition] = ts
        high = self._high
        # the watermark is never below the slowest partition (it only rises, and rises to it), so
        # a partition that was ahead of it was not the slowest one: the minimum has not moved
        if seen is not None and high is not None and seen > high:
            return
        values = self.partitions.values()
        if None in values:
            return
        low: int = min(values)  # type: ignore[type-var, assignment]
        if high is None or low > high:
            self._high = low

    @property
    def watermark(self) -> int | None:
        return self._high

    @property
    def closed_upto(self) -> int | None:
        """Windows whose end is at or before this are closed; None before any watermark."""
        return None if self._high is None else self._high - self.allowed_lateness_ms
