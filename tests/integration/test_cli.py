"""The `tandem` command as a user runs it: a real process, a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.kafka.broker import pid_alive
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import EVENTS
from infra.settings import Settings
from streams.events import decode_event, encode
from tests.helpers import make_event


def tandem(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_broker_up_status_down(tmp_path: Path) -> None:
    env = {"TANDEM_STATE_DIR": str(tmp_path)}
    up = tandem("broker", "up", env=env)
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip().splitlines()[-1]
    host, port = bootstrap.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    state = json.loads((tmp_path / "broker.json").read_text())
    try:
        assert state["bootstrap"] == bootstrap
        assert tandem("broker", "status", env=env).returncode == 0
        again = tandem("broker", "up", env=env)  # idempotent: the same broker
        assert again.stdout.strip().splitlines()[-1] == bootstrap
        topics = tandem("topics", "apply", env=env)
        assert topics.returncode == 0 and "created  tandem.events" in topics.stdout
    finally:
        down = tandem("broker", "down", env=env)
    assert down.returncode == 0 and "broker stopped" in down.stdout
    assert not pid_alive(state["pid"])
    status = tandem("broker", "status", env=env)
    assert status.returncode == 3 and status.stdout.strip() == "down"


def test_publish_reports_accepted_and_rejected_lines(settings: Settings) -> None:
    env = {
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_STATE_DIR": str(settings.state_dir),
    }
    assert tandem("topics", "apply", env=env).returncode == 0
    lines = [
        encode(make_event(1)).decode(),
        "{not json",
        "",
        json.dumps({"event_id": "x", "user_id": "u", "ts": "yesterday", "type": "play", "item_id": "i"}),
        encode(make_event(2)).decode(),
    ]
    result = tandem("publish", "-", env=env, stdin="\n".join(lines) + "\n")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"topic": settings.topic(EVENTS), "accepted": 2, "rejected": 2}
    assert "line 2: rejected: ListeningEvent: malformed JSON" in result.stderr
    assert "line 4: rejected: ListeningEvent: ts: Input should be a valid integer" in result.stderr
    published = [decode_event(record.value) for record in read_topic(settings, settings.topic(EVENTS))]
    assert sorted(event.event_id for event in published) == ["e-1", "e-2"]

    consumed = tandem("consume", "events", env=env)
    assert consumed.returncode == 0
    assert sorted(decode_event(line).event_id for line in consumed.stdout.splitlines()) == ["e-1", "e-2"]


def test_invalid_settings_exit_2_naming_the_variable() -> None:
    result = tandem("topics", "list", env={"TANDEM_PARTITIONS": "many"})
    assert result.returncode == 2
    assert "TANDEM_PARTITIONS" in result.stderr
