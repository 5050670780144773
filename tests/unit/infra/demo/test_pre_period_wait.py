"""Before day 0 the demo waits for the features worker and the learner as long as either moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.demo.run import wait_for_pre_period

Statuses = tuple[dict[str, Any], dict[str, Any]]


def statuses(processed: int, lag: int, learner_read: int, learner_lag: int, waiting: int = 0) -> Statuses:
    return ({"processed": processed, "lag": lag, "waiting": waiting},
            {"read": {"tandem.events": learner_read}, "lag": learner_lag})


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def test_the_wait_outlasts_the_stall_limit_while_the_workers_move():
    # the features worker catches up first, then the learner: 30 reads, each one moved
    reads = iter([statuses(100 * k, 3_000 - 100 * k, 0, 3_000) for k in range(30)]
                 + [statuses(3_000, 0, 100 * k, 3_000 - 100 * k) for k in range(1, 30)]
                 + [statuses(3_000, 0, 3_000, 0)])
    seen = []

    def read() -> Statuses:
        seen.append(next(reads))
        return seen[-1]

    async def slow_sleep(_seconds: float) -> None:
        await asyncio.sleep(0.002)

    asyncio.run(wait_for_pre_period(read, stall_s=0.001, interval_s=0.0, sleep=slow_sleep))
    assert len(seen) == 60


def test_a_stall_fails_naming_what_is_behind():
    with pytest.raises(TimeoutError, match=r"features worker \(lag 7, waiting 2\) and the learner \(lag 9\)"):
        asyncio.run(wait_for_pre_period(lambda: statuses(50, 7, 10, 9, waiting=2), stall_s=0.02, interval_s=0.0,
                                        sleep=no_sleep))


def test_no_status_yet_is_not_caught_up():
    # before the workers write a status file there is nothing; a worker that processed nothing is not done
    reads = iter([({}, {}), statuses(0, 0, 0, 0), statuses(10, 0, 10, 0)])
    asyncio.run(wait_for_pre_period(lambda: next(reads), stall_s=60.0, interval_s=0.0, sleep=no_sleep))
    with pytest.raises(StopIteration):
        next(reads)
