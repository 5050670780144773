"""The archiver on the real broker: every record archived exactly once through 10 SIGKILLs.

The log is published in waves while archivers are started and SIGKILLed at seeded random
moments of their work (one of them kills itself right after writing a batch, before the
next batch and the offset commit); a last one runs to the end of the topics. The archive
must then hold every valid record of the topics exactly once, by record id, and every
invalid record must be a dead letter.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from experiments.batch.archive import RECORD_ID, Archive
from experiments.batch.archiver import STAGE
from experiments.spec import DEMO_SPEC_PATH, load_spec
from experiments.synthetic import synthetic_log
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DEAD_LETTERS, DECISIONS, EVENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import DeadLetter, Decision, Exposure, ListeningEvent, decode, encode
from streams.producer import EventPublisher

WAVES = 11
KILLS = 10
SCHEMAS = {"events": ListeningEvent, "exposures": Exposure, "decisions": Decision}


def make_waves(seed: int) -> list[list[tuple[str, bytes, bytes]]]:
    spec = load_spec(DEMO_SPEC_PATH)
    log = synthetic_log(spec, users=200, days=10, seed=seed)
    decisions = [
        Decision(decision_id=f"d-{i}", user_id=f"user-{i % 200:05d}", ts=spec.start + i * 60_000, policy="popularity",
                 policy_version=1, arm="jazz", propensity=0.5, arms=["jazz", "rock"], context={"plays_1h": 1.0},
                 assignments={spec.id: "control"})
        for i in range(1500)
    ]
    records = ([("events", e.user_id.encode(), encode(e)) for e in log.events]
               + [("exposures", x.user_id.encode(), encode(x)) for x in log.exposures]
               + [("decisions", d.user_id.encode(), encode(d)) for d in decisions])
    random.Random(seed).shuffle(records)
    records[100:100] = [("events", b"user-00001", b"{not json"),
                        ("exposures", b"user-00002", b'{"exposure_id": "x-bad", "user_id": 7}')]
    size = len(records) // WAVES + 1
    return [records[i:i + size] for i in range(0, len(records), size)]


def publish(settings: Settings, wave: list[tuple[str, bytes, bytes]]) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for role, key, value in wave:
            publisher.publish_bytes(key, value, topic=settings.topic(role))


def start_archiver(settings: Settings, log_path: Path, *extra: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "archive", "run", "--flush-interval", "0.3", "--max-records", "400",
             *extra],
            env=environment, stdout=log, stderr=subprocess.STDOUT,
        )


def archived_files(archive: Archive) -> int:
    return sum(len(archive.files(topic)) for topic in RECORD_ID)


@pytest.mark.timeout(900)
def test_every_record_archived_exactly_once_through_sigkills(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    archive = Archive(str(settings.state_dir / "archive"))
    log_path = tmp_path / "archiver.log"
    rng = random.Random(20261207)
    waves = make_waves(seed=5)

    # Killed by itself right after its third batch of files: files written, nothing committed.
    publish(settings, waves[0])
    crashed = start_archiver(settings, log_path, "--crash-after-batches", "3")
    assert crashed.wait(timeout=300) == -signal.SIGKILL, log_path.read_text()[-3000:]
    assert archived_files(archive) > 0

    # SIGKILLed from outside at random moments while it works, a wave published before each start.
    for wave in range(1, KILLS):
        publish(settings, waves[wave])
        worker = start_archiver(settings, log_path)
        try:
            before, deadline = archived_files(archive), time.monotonic() + 120
            while archived_files(archive) <= before and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            worker.kill()
            assert worker.wait(timeout=60) == -signal.SIGKILL, log_path.read_text()[-3000:]

    for wave in waves[KILLS:]:
        publish(settings, wave)
    final = start_archiver(settings, log_path, "--idle-exit", "4")
    assert final.wait(timeout=600) == 0, log_path.read_text()[-3000:]

    for role, topic in (("events", EVENTS), ("exposures", EXPOSURES), ("decisions", DECISIONS)):
        on_topic = Counter()
        for record in read_topic(settings, settings.topic(topic)):
            if not record.value.startswith(b"{not") and b'"user_id": 7' not in record.value:
                on_topic[(record.partition, record.offset)] += 1
        archived = archive.read_table(role)
        ids = Counter(archived.column(RECORD_ID[role]).to_pylist())
        positions = Counter(zip(archived.column("kafka_partition").to_pylist(),
                                archived.column("kafka_offset").to_pylist(), strict=True))
        assert ids and max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:5]
        assert positions == on_topic, role
        published = {
            getattr(decode(r.value, SCHEMAS[role]), RECORD_ID[role])
            for r in read_topic(settings, settings.topic(topic)) if (r.partition, r.offset) in on_topic
        }
        assert set(ids) == published, role

    letters = {
        letter.dead_letter_id: letter
        for letter in (decode(r.value, DeadLetter) for r in read_topic(settings, settings.topic(DEAD_LETTERS)))
        if letter.stage == STAGE
    }
    reasons = sorted(letter.error for letter in letters.values())
    assert len(reasons) == 2, reasons
    assert any("malformed JSON" in reason for reason in reasons)
    assert any("user_id: Input should be a valid string" in reason for reason in reasons)
