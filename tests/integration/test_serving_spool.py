"""``tandem serve`` SIGKILLed under load (seeded) and restarted: every answered decision and exposure
reaches its topic (at least once; consumers dedupe on the ids), sent again from the spool."""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec
from infra.chaos.stack import http_json, wait_until, worker_env
from infra.demo.supervisor import ProcessSpec, Supervisor
from infra.kafka.broker import free_port
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import Decision, Exposure, decode
from tests.helpers import T0_MS

KILLS = 2


@pytest.mark.timeout(300)
def test_answered_records_survive_sigkills_of_serving(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    spec = load_spec(DEMO_SPEC_PATH)
    publish_spec(settings, apply_spec(None, spec, who="test", at=T0_MS))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(20)
    answered: dict[str, list[str]] = {}  # decision id -> experiments it exposed the user to
    refused = Counter[str]()
    stop = threading.Event()

    def client() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            body = json.dumps({"user_id": f"user-{number % 300:05d}", "ts": spec.start + 86_400_000}).encode()
            request = urllib.request.Request(f"{url}/recommend", data=body,  # noqa: S310 - our loopback URL
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our loopback URL
                    answer = json.load(response)
                answered[answer["decision_id"]] = sorted(answer["exposed"])
            except urllib.error.HTTPError as exc:
                refused[str(exc.code)] += 1
            except OSError:
                refused["connection"] += 1  # down between a kill and its restart
                stop.wait(0.02)

    serving = ProcessSpec("serving", ("serve", "--port", str(port)))
    replayed = Counter[str]()
    with Supervisor(state_dir=tmp_path / "processes", env=worker_env(settings)) as supervisor:
        supervisor.restart(serving)
        wait_until(lambda: http_json(f"{url}/health") is not None, timeout_s=120, what="serving",
                   alive=supervisor.check)
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            for _ in range(KILLS):
                before = len(answered)
                wait_until(lambda: len(answered) >= before + 50, timeout_s=60, what="answers under load")  # noqa: B023
                stop.wait(rng.uniform(0.0, 0.5))
                supervisor.kill("serving")
                supervisor.restart(serving)
                wait_until(lambda: http_json(f"{url}/health") is not None, timeout_s=120,
                           what="serving after its restart", alive=supervisor.check)
                replayed.update(http_json(f"{url}/health")["decision_log"]["replayed"])
            before = len(answered)
            wait_until(lambda: len(answered) >= before + 50, timeout_s=60, what="answers after the last restart")
        finally:
            stop.set()
            thread.join(timeout=30)
        supervisor.stop_all()  # SIGTERM: a clean stop delivers (or keeps in the spool) the rest

    decisions = Counter(decode(r.value, Decision).decision_id
                        for r in read_topic(settings, settings.topic(DECISIONS)))
    exposures = Counter(decode(r.value, Exposure).exposure_id
                        for r in read_topic(settings, settings.topic(EXPOSURES)))
    expected_exposures = {f"{d}:{e}" for d, experiments in answered.items() for e in experiments}
    assert len(answered) >= (KILLS + 1) * 50 and expected_exposures, (len(answered), refused)
    assert [d for d in answered if d not in decisions] == []
    assert sorted(expected_exposures - set(exposures)) == []
    # The kills caught records in flight (the producer lingers 100 ms), and the restarts sent them again.
    assert sum(replayed.values()) > 0, replayed
    print(f"answered {len(answered)}, replayed {dict(replayed)}, decisions on the topic twice "
          f"{sum(1 for c in decisions.values() if c > 1)}, refused while down {dict(refused)}")
    assert not list((settings.state_dir / "serving-spool" / str(port)).glob("*.jsonl"))  # all delivered
