"""The learner's status: its lag is never a false 0."""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

from streams.worker.learner.app import _lag


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, highwaters: dict[tuple[str, int], int | None]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return {TP(*key) for key in self.highwaters}

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[(tp.topic, tp.partition)]


def app(highwaters: dict[tuple[str, int], int | None]) -> SimpleNamespace:
    return SimpleNamespace(consumer=FakeConsumer(highwaters))


def test_lag_sums_what_is_not_read_yet_and_skips_empty_partitions() -> None:
    highwaters = {("events", 0): 10, ("events", 1): 7, ("decisions", 0): 0}
    assert _lag(app(highwaters), {("events", 0): 4, ("events", 1): 7}) == 6


def test_lag_is_unknown_before_the_group_join_and_before_every_partition_was_read() -> None:
    assert _lag(app({}), {}) is None
    assert _lag(app({("events", 0): 10, ("events", 1): 3}), {("events", 0): 10}) is None
    assert _lag(app({("events", 0): None}), {("events", 0): 0}) is None
