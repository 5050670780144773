"""The micro-batcher: N records or T ms, acks only after the write, one row per user, retries."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from streams.events import EventType, ListeningEvent
from streams.features import UserFeatureState
from streams.worker.features.batching import MicroBatcher
from tests.helpers import T0_MS


def state_with(user: str, n: int) -> UserFeatureState:
    state = UserFeatureState(user)
    for i in range(n):
        state.apply(ListeningEvent(event_id=f"{user}-{i}", user_id=user, ts=T0_MS + i * 1000,
                                   type=EventType.PLAY, item_id="i", genre="pop", ms_played=1000))
    return state


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[list[dict]] = []
        self.acked: list[int] = []
        self.fail_times = fail_times
        self.threads: set[int] = set()

    def write(self, rows):
        self.threads.add(threading.get_ident())
        if self.fail_times:
            self.fail_times -= 1
            raise OSError("store down")
        self.batches.append(list(rows))

    def ack(self, token):
        self.acked.append(token)


def test_a_full_batch_flushes_once_with_one_row_per_user_and_acks_after_the_write() -> None:
    async def scenario(rec: Recorder) -> None:
        batcher = MicroBatcher(write=rec.write, ack=rec.ack, max_records=4, max_delay_ms=10_000)
        a, b = state_with("a", 2), state_with("b", 1)
        for token, state in enumerate([a, b, a, None]):
            assert rec.acked == []
            await batcher.add(state, token, publish_ms=0.0)
        await batcher.drain()
        assert batcher.stats.flushes == 1 and batcher.stats.records_flushed == 4
        assert batcher.freshness.count == 4
        assert all(stage.count == 4 for stage in batcher.stages.values())  # where freshness goes
        assert set(batcher.stage_summary()) == {f"stage_{name}_{q}_ms" for name in batcher.stages
                                                for q in ("p50", "p99")}

    rec = Recorder()
    asyncio.run(scenario(rec))
    assert rec.acked == [0, 1, 2, 3]
    assert [sorted(row["user_id"] for row in batch) for batch in rec.batches] == [["a", "b"]]
    assert threading.get_ident() not in rec.threads  # the write ran off the event loop


def test_an_old_enough_batch_flushes_without_more_records() -> None:
    async def scenario(rec: Recorder) -> None:
        batcher = MicroBatcher(write=rec.write, ack=rec.ack, max_records=1000, max_delay_ms=20)
        ticker = asyncio.ensure_future(batcher.tick_forever())
        await batcher.add(state_with("a", 1), "t", publish_ms=0.0)
        deadline = time.monotonic() + 60  # a bound on the wait, not on the flush's speed
        while not rec.acked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        ticker.cancel()

    rec = Recorder()
    asyncio.run(scenario(rec))
    assert rec.acked == ["t"]


def test_a_failed_write_is_retried_and_nothing_is_acked_before_it_succeeds() -> None:
    async def scenario(rec: Recorder) -> MicroBatcher:
        batcher = MicroBatcher(write=rec.write, ack=rec.ack, max_records=1, max_delay_ms=10)
        await batcher.add(state_with("a", 1), 1, publish_ms=0.0)
        await batcher.drain()
        return batcher

    rec = Recorder(fail_times=2)
    batcher = asyncio.run(scenario(rec))
    assert batcher.stats.write_errors == 2 and rec.acked == [1] and len(rec.batches) == 1


def test_rows_are_a_snapshot_taken_when_the_batch_is_sealed() -> None:
    async def scenario(rec: Recorder) -> None:
        batcher = MicroBatcher(write=rec.write, ack=rec.ack, max_records=2, max_delay_ms=10_000)
        state = state_with("a", 1)
        await batcher.add(state, 1, publish_ms=0.0)
        await batcher.add(state, 2, publish_ms=0.0)  # seals: plays_7d == 1
        state.apply(ListeningEvent(event_id="late-comer", user_id="a", ts=T0_MS + 5000,
                                   type=EventType.PLAY, item_id="i", ms_played=1))
        await batcher.add(state, 3, publish_ms=0.0)
        await batcher.drain()

    rec = Recorder()
    asyncio.run(scenario(rec))
    assert [batch[0]["plays_7d"] for batch in rec.batches] == [1, 2]
    assert rec.acked == [1, 2, 3]


def test_back_pressure_waits_for_the_running_flush() -> None:
    gate = threading.Event()

    async def scenario(rec: Recorder) -> int:
        def slow_write(rows):
            gate.wait(60)
            rec.write(rows)

        batcher = MicroBatcher(write=slow_write, ack=rec.ack, max_records=2, max_delay_ms=10_000)
        state = state_with("a", 1)
        await batcher.add(state, 0, publish_ms=0.0)
        await batcher.add(state, 1, publish_ms=0.0)  # the first flush starts and blocks
        for token in (2, 3, 4):
            await batcher.add(state, token, publish_ms=0.0)
        blocked = asyncio.ensure_future(batcher.add(state, 5, publish_ms=0.0))  # 4 waiting: 2 x max
        await asyncio.sleep(0.05)
        was_blocked = not blocked.done()
        gate.set()
        await blocked
        await batcher.drain()
        return was_blocked

    rec = Recorder()
    assert asyncio.run(scenario(rec)) is True
    assert rec.acked == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("records", "delay"), [(0, 10.0), (1, 0.0)])
def test_bad_limits_are_refused(records: int, delay: float) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(write=print, ack=print, max_records=records, max_delay_ms=delay)
