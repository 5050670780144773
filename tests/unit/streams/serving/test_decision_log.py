"""The decision log with a fake producer: never blocks the caller, bounded, every record accounted for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from streams.events import Exposure, StickyAssignment
from streams.serving import DecisionLog, Spool
from tests.helpers import T0_MS


class FakeFuture:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def add_callback(self, fn):  # type: ignore[no-untyped-def]
        if self.error is None:
            fn(object())
        return self

    def add_errback(self, fn):  # type: ignore[no-untyped-def]
        if self.error is not None:
            fn(self.error)
        return self


class FakeProducer:
    """Acknowledges at once; ``gate`` makes ``send`` block (a broker that is away); ``fail`` fails deliveries."""

    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False, refusals: int = 0) -> None:
        self.gate, self.fail, self.refusals = gate, fail, refusals
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.closed = False

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        if self.gate is not None:
            self.gate.wait()
        if self.refusals:
            self.refusals -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value))
        return FakeFuture(RuntimeError("broker said no") if self.fail else None)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def exposure(i: int) -> Exposure:
    return Exposure(exposure_id=f"x{i}", experiment="e", variant="a", user_id=f"u{i}", ts=T0_MS)


def make_log(producer: FakeProducer, max_pending: int = 100) -> DecisionLog:
    return DecisionLog(producer_factory=lambda: producer, topics={"exposures": "t.exposures"},
                       max_pending=max_pending, retry_s=0.05)


def wait_until(condition, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_records_are_sent_keyed_by_user_and_acknowledged() -> None:
    producer = FakeProducer()
    log = make_log(producer).start()
    for i in range(50):
        assert log.offer("exposures", exposure(i))
    wait_until(lambda: log.acknowledged["exposures"] == 50)
    log.close()
    assert log.pending == 0 and producer.closed
    assert [key for _, key, _ in producer.sent] == [f"u{i}".encode() for i in range(50)]
    assert {topic for topic, _, _ in producer.sent} == {"t.exposures"}
    assert log.healthy()


def test_a_blocked_broker_never_blocks_offer_and_overflow_is_counted() -> None:
    gate = threading.Event()
    log = make_log(FakeProducer(gate=gate), max_pending=20).start()
    accepted: list[bool] = []
    offering = threading.Thread(target=lambda: accepted.extend(log.offer("exposures", exposure(i))
                                                               for i in range(100)))
    offering.start()
    offering.join(timeout=60)  # the gate stays shut: an offer that waited for send would never return
    assert not offering.is_alive(), "offer blocked on the broker"
    assert sum(accepted) == 20 and log.overflowed["exposures"] == 80 and log.pending == 20
    assert not log.healthy()
    gate.set()
    wait_until(lambda: log.acknowledged["exposures"] == 20)
    assert log.pending == 0
    log.close()


def test_failed_deliveries_are_counted_and_make_the_log_unhealthy() -> None:
    log = make_log(FakeProducer(fail=True)).start()
    for i in range(5):
        log.offer("exposures", exposure(i))
    wait_until(lambda: log.failed["exposures"] == 5)
    assert log.pending == 0 and "broker said no" in (log.last_error or "") and not log.healthy()
    log.close()


def test_a_send_refused_for_a_full_queue_is_retried_not_lost() -> None:
    producer = FakeProducer(refusals=3)
    log = make_log(producer).start()
    log.offer("exposures", exposure(1))
    wait_until(lambda: log.acknowledged["exposures"] == 1)
    assert len(producer.sent) == 1
    log.close()


def test_a_producer_that_cannot_start_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    attempts = []

    def factory() -> FakeProducer:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("connection refused")
        return FakeProducer()

    log = DecisionLog(producer_factory=factory, topics={"exposures": "t"}, retry_s=0.02).start()
    log.offer("exposures", exposure(1))
    wait_until(lambda: log.acknowledged["exposures"] == 1)
    log.close()
    assert len(attempts) == 3


def test_close_reports_what_could_not_be_sent(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    log = make_log(FakeProducer(gate=gate)).start()
    for i in range(3):
        log.offer("exposures", exposure(i))
    # The drain thread is stuck in send() until the gate opens, which is only after close returned.
    closing = threading.Thread(target=log.close, kwargs={"timeout_s": 0.1})
    closing.start()
    closing.join(timeout=60)
    closed_while_stuck = not closing.is_alive()
    gate.set()
    assert closed_while_stuck, "close waited for the stuck send"
    assert "3 records unsent or unacknowledged" in caplog.text


def test_offer_all_accepts_in_order_up_to_the_limit_and_keys_sticky_records_by_experiment_and_user(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    log = DecisionLog(producer_factory=FakeProducer, topics={"exposures": "t.x", "sticky": "t.s"}, max_pending=3,
                      spool=spool)
    sticky = StickyAssignment(assignment_id="d:e", experiment="e", variant="a", user_id="u9", ts=T0_MS)
    accepted = log.offer_all([("exposures", exposure(0)), ("sticky", sticky), ("exposures", exposure(1)),
                              ("exposures", exposure(2))])
    assert accepted == [True, True, True, False]
    assert dict(log.offered) == {"exposures": 2, "sticky": 1} and dict(log.overflowed) == {"exposures": 1}
    lines = [line for path in sorted((tmp_path / "spool").glob("*.jsonl")) for line in path.read_bytes().splitlines()]
    assert [line[:40] for line in lines] == [  # on the spool (flushed to the OS) when offer_all returns
        b'{"kind":"exposures","key":"u0","value":{', b'{"kind":"sticky","key":"e/u9","value":{"',
        b'{"kind":"exposures","key":"u1","value":{']
    spool.close()
