"""The write-ahead spool: append, confirm, drop, recover, a torn last line, one process at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streams.events import Exposure, decode
from streams.serving import DecisionLog, Spool, SpoolError
from tests.helpers import T0_MS
from tests.unit.streams.serving.test_decision_log import FakeProducer, exposure, wait_until


def value(i: int) -> bytes:
    return json.dumps({"exposure_id": f"x{i}", "n": i}, separators=(",", ":")).encode()


def abandon(spool: Spool) -> None:
    """What a killed process leaves: its files as written (each append was flushed), its lock released."""
    if spool._file is not None:
        spool._file.close()
    spool._lock_file.close()


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


def test_confirmed_segments_are_dropped_and_the_rest_recovered_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_records=3)
    segments = [spool.append("exposures", f"u{i}".encode(), value(i)) for i in range(8)]
    assert segments == [0, 0, 0, 1, 1, 1, 2, 2]
    for i in (0, 1, 2, 3, 5, 6):  # segment 0 complete; 1 lacks record 4; 2 is open
        spool.confirm(segments[i])
    assert segment_files(tmp_path) == ["000000000001.jsonl", "000000000002.jsonl"]
    assert spool.outstanding == 2
    abandon(spool)

    again = Spool(tmp_path, segment_records=3)
    recovered = again.recover()
    # A segment keeps every record until all are confirmed: 3, 4, 5 from segment 1; 6, 7 from 2.
    assert [(r.kind, r.key, json.loads(r.value)["n"]) for r in recovered] == [
        ("exposures", f"u{i}".encode(), i) for i in (3, 4, 5, 6, 7)]
    assert again.append("exposures", b"u9", value(9)) == 3  # new segments follow the old ones
    again.discard_recovered()
    assert segment_files(tmp_path) == ["000000000003.jsonl"]
    again.confirm(3)
    again.close()
    assert segment_files(tmp_path) == []


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append("decisions", b"u", value(i))
    spool.close()
    (path,) = tmp_path.glob("*.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])  # the kill cut the last write short
    again = Spool(tmp_path)
    assert [json.loads(r.value)["n"] for r in again.recover()] == [0, 1]
    assert again.torn_lines == 1
    again.close()


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolError, match="spool_dir: .* in use by another serving process"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_a_foreign_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.jsonl").write_text("{}\n")
    with pytest.raises(SpoolError, match="spool_dir: notes.jsonl is not a spool segment"):
        Spool(tmp_path)


def test_records_written_before_a_sigkill_are_recovered(tmp_path: Path) -> None:
    """A real SIGKILL: what ``append`` flushed is in the page cache, so the next process reads it."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from streams.serving import Spool\n"
        "spool = Spool(Path(sys.argv[1]), segment_records=50)\n"
        "for i in range(120):\n"
        "    spool.append('exposures', b'u', b'{\"n\":%d}' % i)\n"
        "    if i % 2 == 0: spool.confirm(i // 50)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == -9
    again = Spool(tmp_path, segment_records=50)
    # Segments 0 and 1 each kept their odd half unconfirmed; the open segment 2 holds 100..119.
    assert [json.loads(r.value)["n"] for r in again.recover()] == list(range(120))
    again.close()


def test_the_decision_log_spools_before_offer_returns_and_replays_at_start(tmp_path: Path) -> None:
    gate = threading.Event()  # the broker is away: nothing is acknowledged
    producer = FakeProducer(gate=gate)
    log = DecisionLog(producer_factory=lambda: producer, topics={"exposures": "t.exposures"},
                      max_pending=10, retry_s=0.05, spool=Spool(tmp_path, segment_records=4)).start()
    for i in range(12):
        log.offer("exposures", exposure(i))
    # Spooled when offer returned; the two past the bound are counted, never spooled.
    assert log.overflowed["exposures"] == 2
    lines = [json.loads(line) for p in sorted(tmp_path.glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert [line["value"]["exposure_id"] for line in lines] == [f"x{i}" for i in range(10)]
    assert log.spool is not None
    abandon(log.spool)

    second = FakeProducer()
    replaying = DecisionLog(producer_factory=lambda: second, topics={"exposures": "t.exposures"},
                            max_pending=10, retry_s=0.05, spool=Spool(tmp_path, segment_records=4)).start()
    wait_until(lambda: replaying.acknowledged["exposures"] == 10)
    assert replaying.replayed["exposures"] == 10
    sent = [decode(v, Exposure) for _, _, v in second.sent]
    assert [e.exposure_id for e in sent] == [f"x{i}" for i in range(10)]
    assert [k for _, k, _ in second.sent] == [f"u{i}".encode() for i in range(10)]
    assert sent[0].ts == T0_MS
    replaying.close()
    assert segment_files(tmp_path) == []  # everything confirmed: nothing left to send again
    gate.set()
    wait_until(lambda: log.pending == 0)
    log.spool = None  # abandoned above: its files belong to the second log now
    log.close(timeout_s=0.5)
