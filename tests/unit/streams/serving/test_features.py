"""Feature reads off the event loop: coalesced while one runs, bounded in time, defaults on failure."""

from __future__ import annotations

import asyncio
import threading
import time

from streams.serving.features import CoalescingFeatureReader


class Store:
    """``gate``: each read waits for it (at most a minute), a store as slow as the test wants."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.defaults = {"plays_1h": 0}
        self.delay_s, self.fail, self.gate = delay_s, fail, gate
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        self.calls.append(list(user_ids))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.gate is not None:
            self.gate.wait(timeout=60)
        if self.fail:
            raise OSError("disk on fire")
        return {user: {"plays_1h": int(user[1:])} for user in user_ids}


def gather(reader: CoalescingFeatureReader, users: list[str]) -> list[dict]:
    async def main() -> list[dict]:
        return list(await asyncio.gather(*(reader.get(user) for user in users)))

    try:
        return asyncio.run(main())
    finally:
        reader.close()


def test_concurrent_requests_share_reads_and_get_their_own_rows() -> None:
    store = Store(delay_s=0.02)
    users = [f"u{i}" for i in range(20)] + ["u3"]
    rows = gather(CoalescingFeatureReader(store, timeout_s=60.0), users)
    assert [row["plays_1h"] for row in rows] == [int(u[1:]) for u in users]
    assert len(store.calls) == 2 and store.calls[0] == ["u0"]  # the first read, then everyone who waited
    assert sorted(store.calls[1]) == sorted(f"u{i}" for i in range(1, 20))
    assert store.threads == {"serving-features_0"}


def test_slow_failing_or_overloaded_reads_fall_back_to_the_defaults() -> None:
    gate = threading.Event()  # shut until both answers are in: the read cannot beat the timeout
    reader = CoalescingFeatureReader(Store(gate=gate), timeout_s=0.02)
    assert gather(reader, ["u1", "u2"]) == [{"plays_1h": 0}] * 2
    gate.set()
    assert reader.fallbacks["timeout"] == 2

    reader = CoalescingFeatureReader(Store(fail=True), timeout_s=60.0)
    assert gather(reader, ["u1", "u2", "u3"]) == [{"plays_1h": 0}] * 3 and reader.fallbacks["error"] == 3

    reader = CoalescingFeatureReader(Store(delay_s=0.05), timeout_s=60.0, max_waiting=2)
    rows = gather(reader, ["u1", "u2", "u3", "u4"])  # u1 is being read, u2 and u3 wait, u4 is one too many
    assert reader.fallbacks["busy"] == 1 and rows == [{"plays_1h": 1}, {"plays_1h": 2}, {"plays_1h": 3},
                                                      {"plays_1h": 0}]
