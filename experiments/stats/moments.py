"""Count, sum and sum of squares of a metric over a group of users: what a cell of an analysis holds.

>>> m = Moments().add(1.0).add(3.0)
>>> m.n, m.mean, m.variance
(2, 2.0, 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Moments:
    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def add(self, value: float) -> Moments:
        return Moments(self.n + 1, self.sum + value, self.sum_sq + value * value)

    @property
    def mean(self) -> float:
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Sample variance (n - 1)."""
        return max(self.sum_sq - self.sum * self.sum / self.n, 0.0) / (self.n - 1)
