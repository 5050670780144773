"""`tandem evaluate-policy` on a logged decisions topic whose candidate's true value is known."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

from infra.kafka.config import producer_config
from infra.kafka.topics import DECISIONS, EVENTS, MODELS, apply_topics
from infra.settings import Settings
from streams.events import Decision, EventType, ListeningEvent, ModelSnapshot
from streams.policies import make_policy
from streams.producer import EventPublisher
from tests.helpers import T0_MS


def test_a_snapshot_candidate_is_estimated_within_its_interval(settings: Settings) -> None:
    apply_topics(settings)
    rng = random.Random(5)
    # Logged by a uniform policy over two genres; listeners play jazz 90 % of the time, rock 20 %.
    play_rate = {"jazz": 0.9, "rock": 0.2}
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for number in range(3000):
            ts = T0_MS + number * 1000
            arm = rng.choice(["jazz", "rock"])
            publisher.publish(Decision(decision_id=f"d{number}", user_id=f"u{number}", ts=ts, policy="uniform",
                                       policy_version=0, arm=arm, propensity=0.5, arms=["jazz", "rock"]),
                              topic=settings.topic(DECISIONS))
            if rng.random() < play_rate[arm]:
                publisher.publish(ListeningEvent(event_id=f"e{number}", user_id=f"u{number}", ts=ts + 60_000,
                                                 type=EventType.PLAY, item_id=f"{arm}-1", genre=arm))
        publisher.publish(ListeningEvent(event_id="end", user_id="end", ts=T0_MS + 10**8,
                                         type=EventType.SESSION_START))
        # The candidate: popularity that has learned jazz, epsilon 0.2, so P(jazz) = 0.9: true value 0.83.
        candidate = make_policy("popularity", seed=1, epsilon=0.2)
        candidate.update({}, "jazz", 1.0)
        publisher.publish_bytes(b"popularity", ModelSnapshot(
            snapshot_id="s1", policy="popularity", version=candidate.version, ts=T0_MS, updates=1,
            state=candidate.to_state()).model_dump_json().encode(), topic=settings.topic(MODELS))
    true_value = 0.9 * play_rate["jazz"] + 0.1 * play_rate["rock"]

    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "evaluate-policy", "popularity", "--from-snapshot"],
        env={**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
             "TANDEM_TOPIC_PREFIX": settings.topic_prefix},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["logged"]["decisions"] == 3000
    assert abs(report["logged"]["mean_reward"] - 0.55) < 0.03  # the logging policy's own value
    for method in ("ips", "snips", "dr"):
        estimate = report["estimates"][method]
        assert estimate["ci_low"] <= true_value <= estimate["ci_high"], (method, estimate)
        assert estimate["ci_high"] - estimate["ci_low"] < 0.1
