"""The learner's worker, a real subprocess on the embedded broker, is
SIGKILLed mid-stream and restarted: its final state equals an uninterrupted in-process
learner fed the same records, and the committed offsets never passed its checkpoint."""

from __future__ import annotations

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

from infra.chaos.oracles import comparable_learner_state, learner_oracle
from infra.kafka.config import admin_config, producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EVENTS, MODELS, apply_topics
from infra.settings import Settings
from streams.events import Decision, EventType, ListeningEvent, ModelSnapshot, decode
from streams.learning import Checkpoint
from streams.producer import EventPublisher
from streams.worker.app import app_id
from streams.worker.learner.agent import newest_checkpoint
from streams.worker.learner.app import LEARNER_APP_NAME, learner_status_path
from streams.worker.status import read_status
from tests.helpers import T0_MS

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000
ARMS = ["jazz", "rock", "pop", "folk"]
POLICIES = ["linucb", "epsilon_greedy"]


def make_log(decisions: int, users: int, *, seed: int) -> list[Decision | ListeningEvent]:
    """Decisions every ~20 s of event time and the plays and skips that follow some of them,
    sorted by event time, so every partition is in event-time order (nothing is late)."""
    rng = random.Random(seed)
    records: list[Decision | ListeningEvent] = []
    for number in range(decisions):
        user = f"user-{rng.randrange(users):03d}"
        ts = T0_MS + number * 20_000
        arm = rng.choice(ARMS)
        x = round(rng.uniform(-1, 1), 3)
        records.append(Decision(
            decision_id=f"d-{number}", user_id=user, ts=ts, policy=POLICIES[number % 2], policy_version=0, arm=arm,
            propensity=0.25, arms=ARMS, context={"x": x, "bias": 1.0},
        ))
        for extra in range(rng.randrange(3)):
            played = rng.random() < (0.7 if (arm == "jazz") == (x > 0) else 0.3)
            records.append(ListeningEvent(
                event_id=f"e-{number}-{extra}", user_id=user, ts=ts + rng.randrange(1, 40) * MINUTE,
                type=EventType.PLAY if played else EventType.SKIP, item_id=f"{arm}-1",
                genre=arm if rng.random() < 0.8 else rng.choice(ARMS), ms_played=rng.randrange(1_000, 200_000),
            ))
    return sorted(records, key=lambda record: record.ts)


def publish(settings: Settings, records: Sequence[Decision | ListeningEvent], *,
            rate_per_s: float | None = None, paced_until: threading.Event | None = None) -> None:
    """``rate_per_s``: at most that many records a second, until ``paced_until`` is set."""
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        began = time.monotonic()
        for number, record in enumerate(records):
            publisher.publish(record, topic=settings.topic(DECISIONS if isinstance(record, Decision) else EVENTS))
            if rate_per_s and number % 25 == 24 and not (paced_until and paced_until.is_set()):
                publisher.flush()
                time.sleep(max(0.0, began + (number + 1) / rate_per_s - time.monotonic()))


#: Records published only after the kill, so that the kill is always mid-stream.
HELD_BACK = 200


def publish_around_a_kill(settings: Settings, records: Sequence[Decision | ListeningEvent],
                          killed: threading.Event) -> None:
    """Paced until the kill (the learner reads past its checkpoints only while records arrive:
    the log is long enough to last ~15 s, where a kill takes a second or two), then at full speed."""
    publish(settings, records[:-HELD_BACK], rate_per_s=300, paced_until=killed)
    killed.wait()
    publish(settings, records[-HELD_BACK:])


@contextmanager
def worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
        "TANDEM_PARTITIONS": str(settings.partitions),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.worker", "--role", "learner", "--commit-interval", "0.5",
             "--status-interval", "0.1", "--loglevel", "info"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def learner_id(settings: Settings) -> str:
    return app_id(settings, LEARNER_APP_NAME)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def wait_checkpoint(settings: Settings, process: subprocess.Popen[bytes], done, *, timeout_s: float,
                    log: Path) -> Checkpoint:
    deadline = time.monotonic() + timeout_s
    checkpoint = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited ({process.returncode}):\n{tail(log)}"
        checkpoint = newest_checkpoint(settings, learner_id(settings))
        if checkpoint is not None and done(checkpoint):
            return checkpoint
        time.sleep(0.3)
    raise AssertionError(f"timed out; newest checkpoint {checkpoint and checkpoint.head.seq}\n{tail(log)}")


def positions(checkpoint: Checkpoint) -> dict[tuple[str, int], int]:
    return {(p.topic, p.partition): p.offset for p in checkpoint.head.positions}


def covered(checkpoint: Checkpoint) -> int:
    return sum(positions(checkpoint).values())


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**admin_config(settings))
    try:
        offsets = admin.list_group_offsets({learner_id(settings): None})[learner_id(settings)]
    finally:
        admin.close()
    inputs = {settings.topic(DECISIONS), settings.topic(EVENTS)}
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
            if tp.topic in inputs and meta.offset >= 0}


def kill_with_work_past_the_checkpoint(settings: Settings, process: subprocess.Popen[bytes], after: int, *,
                                       margin: int, log: Path) -> Checkpoint:
    """SIGKILL ``process`` once its newest checkpoint covers more than ``after`` records and the
    learner has read at least ``margin`` events past it (its status file says how far it read):
    work that only the crashed process held. The checkpoint it was killed after."""
    events = settings.topic(EVENTS)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited ({process.returncode}):\n{tail(log)}"
        checkpoint = newest_checkpoint(settings, learner_id(settings))
        status = read_status(learner_status_path(settings))
        if checkpoint is not None and covered(checkpoint) > after and status and status["pid"] == process.pid:
            events_covered = sum(o for (topic, _), o in positions(checkpoint).items() if topic == events)
            read_past = status["read"].get(events, 0) - events_covered
            if read_past >= margin:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                return checkpoint
        time.sleep(0.05)
    raise AssertionError(f"never saw {margin} events read past a checkpoint\n{tail(log)}")


def test_sigkill_mid_stream_then_restart_equals_the_uninterrupted_learner(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    records = make_log(3000, 60, seed=4)
    head = 800
    publish(settings, records[:head])
    log = tmp_path / "worker.log"

    with worker(settings, log) as process:
        first = wait_checkpoint(settings, process, lambda c: covered(c) >= head, timeout_s=300, log=log)
        killed = threading.Event()
        publisher = threading.Thread(target=publish_around_a_kill, args=(settings, records[head:], killed),
                                     daemon=True)
        publisher.start()
        try:
            killed_after = kill_with_work_past_the_checkpoint(settings, process, covered(first), margin=100,
                                                              log=log)
        finally:
            killed.set()
    stored = newest_checkpoint(settings, learner_id(settings))
    assert stored is not None and stored.head.seq >= killed_after.head.seq
    committed = committed_offsets(settings)
    assert committed, "nothing was committed before the kill: the test proves little"
    # The invariant behind exactness: offsets are committed only once a stored checkpoint covers them.
    assert all(offset <= positions(stored).get(tp, 0) for tp, offset in committed.items()), (committed, stored.head)
    publisher.join(timeout=300)
    assert not publisher.is_alive(), "the log was not published"

    expected, ends = learner_oracle(settings)
    assert expected.learner.updates > 500 and expected.learner.late == 0
    with worker(settings, log) as process:
        final = wait_checkpoint(settings, process, lambda c: positions(c) == ends, timeout_s=300, log=log)
        assert final.head.seq > stored.head.seq  # numbered on from the restored checkpoint
        assert comparable_learner_state(final.state()) == comparable_learner_state(expected.learner.to_state())
        # Serving's view: the newest snapshot of each policy is the uninterrupted learner's policy.
        want = {name: policy.to_state() for name, policy in expected.learner.policies.items()}
        deadline = time.monotonic() + 300
        while True:
            snapshots = {snapshot.policy: snapshot.state for snapshot in (
                decode(r.value, ModelSnapshot) for r in read_topic(settings, settings.topic(MODELS)))}
            if snapshots == want or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert {n: s["version"] for n, s in snapshots.items()} == {n: s["version"] for n, s in want.items()}
        assert snapshots == want
