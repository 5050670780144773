"""The features worker as a real subprocess on the embedded broker: exact features in the
online store, across SIGKILLs, with bad records dead-lettered and the stream going on."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from feature_store import FeatureStoreClient, FeatureStoreSettings
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DEAD_LETTERS, EVENTS, apply_topics
from infra.settings import Settings
from streams.events import DeadLetter, EventType, ListeningEvent, decode_dead_letter, encode
from streams.features import ApplyOutcome, UserFeatureState, default_features
from streams.producer import EventPublisher
from streams.worker.status import read_status, status_path
from tests.helpers import T0_MS

ROOT = Path(__file__).resolve().parents[2]
TYPES = [EventType.PLAY] * 5 + [EventType.SKIP] * 3 + [EventType.LIKE, EventType.SESSION_START, EventType.SESSION_END]
GENRES = ["pop", "rock", "jazz", "Hip-Hop", "polka", None]


def make_events(n: int, users: int, *, seed: int) -> list[ListeningEvent]:
    """``n`` records over ``users`` users, with out-of-order events (within and beyond the
    5-minute lateness) and duplicates (an earlier record published again)."""
    rng = random.Random(seed)
    out: list[ListeningEvent] = []
    for i in range(n):
        if out and rng.random() < 0.04:
            out.append(rng.choice(out))  # a duplicate, identical on the wire
            continue
        ts = T0_MS + i * 2_000
        roll = rng.random()
        if roll < 0.08:
            ts -= rng.randrange(1_000, 240_000)  # out of order, within the lateness
        elif roll < 0.10:
            ts -= rng.randrange(600_000, 3_600_000)  # late for a user seen recently
        kind = rng.choice(TYPES)
        item = f"item-{rng.randrange(200)}" if kind in (EventType.PLAY, EventType.SKIP, EventType.LIKE) else None
        out.append(ListeningEvent(
            event_id=f"ev-{seed}-{i}", user_id=f"user-{rng.randrange(users):04d}", ts=ts, type=kind,
            item_id=item, genre=rng.choice(GENRES), ms_played=rng.randrange(0, 300_000),
        ))
    return out


def oracle(events: Sequence[ListeningEvent]) -> tuple[dict[str, dict], int]:
    """Every user's features from the pure state applied in log order, and the late count."""
    states: dict[str, UserFeatureState] = {}
    late = 0
    for event in events:
        state = states.setdefault(event.user_id, UserFeatureState(event.user_id))
        late += state.apply(event).outcome is ApplyOutcome.LATE
    return {user: state.features() for user, state in states.items()}, late


def publish(settings: Settings, records: Sequence[ListeningEvent | tuple[bytes, bytes]], *,
            rate_per_s: float | None = None) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        began = time.monotonic()
        for number, record in enumerate(records):
            if isinstance(record, tuple):
                publisher.publish_bytes(*record)
            else:
                publisher.publish(record)
            if rate_per_s and number % 50 == 49:
                publisher.flush()
                time.sleep(max(0.0, began + (number + 1) / rate_per_s - time.monotonic()))


#: Records of a chunk published only once the worker is killed: the kill is always mid-stream.
HELD_BACK = 200


def publish_around_a_kill(settings: Settings, chunk: Sequence[ListeningEvent], killed: threading.Event) -> None:
    publish(settings, chunk[:-HELD_BACK], rate_per_s=250)
    killed.wait()
    publish(settings, chunk[-HELD_BACK:], rate_per_s=250)


@contextmanager
def worker(settings: Settings, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
        "TANDEM_PARTITIONS": str(settings.partitions),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.worker", "--flush-ms", "100", "--status-interval", "0.2",
             "--loglevel", "info", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def wait_status(settings: Settings, process: subprocess.Popen[bytes], done, *, timeout_s: float, log: Path) -> dict:
    """Poll the status file of ``process`` until ``done(status)``; fail with the log's tail."""
    deadline = time.monotonic() + timeout_s
    status: dict | None = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited ({process.returncode}):\n{tail(log)}"
        status = read_status(status_path(settings))
        if status is not None and status["pid"] == process.pid and done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting; last status {status}\n{tail(log)}")


def caught_up(status: dict) -> bool:
    """Every partition read to its high-watermark and every row written."""
    return status["lag"] == 0 and status["waiting"] == 0 and len(status["assigned_partitions"]) > 0


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def online_features(settings: Settings, users: Sequence[str]) -> dict[str, dict]:
    with FeatureStoreClient(settings=FeatureStoreSettings(repo_path=settings.feast_dir),
                            defaults=default_features()) as store:
        return store.read(list(users))


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # exited, not yet reaped by its new parent


def gone_within(pids: Sequence[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def dead_letters(settings: Settings) -> list[DeadLetter]:
    return [decode_dead_letter(r.value) for r in read_topic(settings, settings.topic(DEAD_LETTERS))]


def test_online_store_equals_the_oracle(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    events = make_events(3000, 300, seed=1)
    expected, late = oracle(events)
    assert late > 10 and len(expected) > 250
    publish(settings, events)
    log = tmp_path / "worker.log"
    with worker(settings, log) as process:
        status = wait_status(settings, process, caught_up, timeout_s=300, log=log)
        stop(process)
    assert status["processed"] == len(events)
    assert status["late"] == late
    assert status["freshness_p99_ms"] is not None
    assert online_features(settings, sorted(expected)) == expected
    letters = dead_letters(settings)
    assert len(letters) == late
    assert all(letter.stage == "features" and "allowed lateness" in letter.error for letter in letters)


def test_sigkill_mid_stream_twice_loses_nothing_and_counts_nothing_twice(settings: Settings, tmp_path: Path) -> None:
    """Each worker is killed after it committed offsets and while records are still arriving,
    so a restart both recovers the table and replays records whose rows may not be online."""
    apply_topics(settings)
    events = make_events(4000, 300, seed=2)
    expected, _ = oracle(events)
    publish(settings, events[:1000])
    log = tmp_path / "worker.log"
    kills: list[dict] = []
    for chunk in (events[1000:2500], events[2500:]):
        floor = kills[-1]["committed"] if kills else 0
        with worker(settings, log, "--commit-interval", "0.5", "--persist-interval", "1") as process:
            wait_status(settings, process, lambda s: s["processed"] > 0, timeout_s=300, log=log)
            killed = threading.Event()
            publisher = threading.Thread(target=publish_around_a_kill, args=(settings, chunk, killed), daemon=True)
            publisher.start()
            try:
                status = wait_status(settings, process, lambda s, floor=floor: s["committed"] > floor
                                     and s["processed"] >= 300, timeout_s=300, log=log)
                writers = children(process.pid)
                assert writers, "the Feast writer process was not found"
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
            finally:
                killed.set()
            assert gone_within(writers, 60.0), f"the Feast writer outlived its killed worker: {writers}"
            kills.append(status)
            # The rest of the chunk waits for the next worker; the next chunk must follow it in the log.
            publisher.join(timeout=300)
            assert not publisher.is_alive(), "the chunk was not published"
    with worker(settings, log, "--commit-interval", "0.5", "--persist-interval", "1") as process:
        status = wait_status(settings, process, caught_up, timeout_s=300, log=log)
        stop(process)
    assert online_features(settings, sorted(expected)) == expected
    # The last worker started from committed offsets, not from the beginning.
    assert status["processed"] < len(events)
    print(json.dumps({"killed": [{k: s[k] for k in ("processed", "committed", "waiting")} for s in kills],
                      "final": {k: status[k] for k in ("processed", "duplicates", "committed")}}))


def test_bad_records_are_dead_lettered_and_the_stream_goes_on(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    good = make_events(400, 40, seed=3)
    expected, _ = oracle(good)
    user = good[0].user_id.encode()
    valid = json.loads(encode(good[0]))
    missing = {k: v for k, v in valid.items() if k != "ts"} | {"event_id": "missing-ts"}
    oversized = valid | {"event_id": "big", "item_id": "x" * 70_000}
    bad = [
        (user, b'{"event_id": "broken", "user_id": '),
        (user, json.dumps(missing).encode()),
        (user, json.dumps(oversized).encode()),
    ]
    publish(settings, [*good[:200], *bad, *good[200:]])
    log = tmp_path / "worker.log"
    with worker(settings, log) as process:
        status = wait_status(settings, process, caught_up, timeout_s=300, log=log)
        stop(process)
    assert status["invalid"] == 3
    assert online_features(settings, sorted(expected)) == expected
    letters = [letter for letter in dead_letters(settings) if letter.stage == "decode"]
    assert len(letters) == 3
    by_value = {letter.raw_value(): letter for letter in letters}
    assert "malformed JSON" in by_value[bad[0][1]].error
    assert "ts: Field required" in by_value[bad[1][1]].error
    assert by_value[bad[2][1][: 512 * 1024]].error_type == "RecordTooLarge"
    assert all(letter.source_topic == settings.topic(EVENTS) for letter in letters)
    offsets = {(letter.partition, letter.offset) for letter in letters}
    assert len(offsets) == 3
