"""`tandem experiments apply` with the evaluation gate: a policy the log predicts harmful is refused,
one that passes is published with its evaluation record, and `--no-gate` is recorded."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import yaml

from experiments.lifecycle import read_specs
from experiments.spec import DEMO_SPEC_PATH
from experiments.surrogate import Surrogate
from infra.kafka.config import producer_config
from infra.kafka.topics import DECISIONS, EVENTS, MODELS, apply_topics
from infra.settings import Settings
from streams.events import Decision, EventType, ListeningEvent, ModelSnapshot
from streams.policies import make_policy
from streams.producer import EventPublisher
from tests.helpers import T0_MS

PLAY_RATE = {"jazz": 0.9, "rock": 0.2}


def publish_log(settings: Settings) -> None:
    """Decisions of a uniform policy over two genres; listeners play jazz 90 % of the time, rock 20 %."""
    rng = random.Random(7)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for number in range(2000):
            ts = T0_MS + number * 1000
            arm = rng.choice(["jazz", "rock"])
            publisher.publish(Decision(decision_id=f"d{number}", user_id=f"u{number}", ts=ts, policy="uniform",
                                       policy_version=0, arm=arm, propensity=0.5, arms=["jazz", "rock"]),
                              topic=settings.topic(DECISIONS))
            if rng.random() < PLAY_RATE[arm]:
                publisher.publish(ListeningEvent(event_id=f"e{number}", user_id=f"u{number}", ts=ts + 60_000,
                                                 type=EventType.PLAY, item_id=f"{arm}-1", genre=arm))
        publisher.publish(ListeningEvent(event_id="end", user_id="end", ts=T0_MS + 10**8,
                                         type=EventType.SESSION_START))


def publish_popularity(settings: Settings, favourite: str, snapshot_id: str) -> None:
    """A popularity snapshot that learned ``favourite`` (epsilon 0.2: it serves it 90 % of the time)."""
    policy = make_policy("popularity", seed=1, epsilon=0.2)
    policy.update({}, favourite, 1.0)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(MODELS)) as publisher:
        publisher.publish_bytes(b"popularity", ModelSnapshot(
            snapshot_id=snapshot_id, policy="popularity", version=policy.version, ts=T0_MS, updates=1,
            state=policy.to_state()).model_dump_json().encode(), topic=settings.topic(MODELS))


def write_spec(tmp_path: Path, experiment: str, buckets: list[int]) -> Path:
    """The demo's spec with uniform against popularity, in its own buckets of one layer (both set the ranker)."""
    spec = yaml.safe_load(DEMO_SPEC_PATH.read_text(encoding="utf-8"))
    spec.update(id=experiment, salt=f"{experiment}/1", layer={"name": "gate", "buckets": buckets}, variants=[
        {"name": "control", "weight": 0.5, "policy": "uniform"},
        {"name": "treatment", "weight": 0.5, "policy": "popularity", "policy_params": {"epsilon": 0.2}},
    ])
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def apply(settings: Settings, spec: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "experiments", "apply", str(spec), *extra],
        env={**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
             "TANDEM_TOPIC_PREFIX": settings.topic_prefix},
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_the_gate_refuses_a_harmful_policy_records_no_gate_and_accepts_a_passing_one(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    publish_log(settings)
    surrogate = tmp_path / "surrogate.json"
    surrogate.write_text(json.dumps(Surrogate(
        outcome="retention_d7", signals=("genres_discovered", "plays"),
        coefficients={"genres_discovered": 0.05, "plays": 0.01}, intercept=0.4, l2=1.0, n=1000,
        experiments=("past",)).to_state()), encoding="utf-8")

    # Popularity that learned rock: 0.9 · 0.2 + 0.1 · 0.9 = 0.27 plays per decision against uniform's 0.55.
    publish_popularity(settings, "rock", "s-rock")
    harmful = write_spec(tmp_path, "gate_harmful", [0, 3000])
    refused = apply(settings, harmful, "--surrogate", str(surrogate))
    assert refused.returncode == 2, refused.stdout
    assert "evaluation gate refused" in refused.stderr and "variants.treatment (popularity)" in refused.stderr
    assert "short_term: dr predicts harm" in refused.stderr and "long_term: dr predicts harm" in refused.stderr
    assert "gate_harmful" not in read_specs(settings)

    without = apply(settings, harmful, "--surrogate", str(surrogate), "--no-gate")
    assert without.returncode == 0, without.stderr
    assert "evaluation gate skipped" in without.stdout
    skipped = read_specs(settings)["gate_harmful"].evaluation
    assert skipped is not None and skipped.gate == "skipped" and skipped.who and not skipped.variants

    unjudged = apply(settings, write_spec(tmp_path, "gate_no_surrogate", [3000, 6000]))
    assert unjudged.returncode == 2 and "needs a surrogate" in unjudged.stderr

    # Popularity that learned jazz: 0.9 · 0.9 + 0.1 · 0.2 = 0.83 plays per decision.
    publish_popularity(settings, "jazz", "s-jazz")
    passing = apply(settings, write_spec(tmp_path, "gate_passing", [6000, 10000]), "--surrogate", str(surrogate))
    assert passing.returncode == 0, passing.stderr
    assert "evaluation gate passed" in passing.stdout
    record = read_specs(settings)["gate_passing"].evaluation
    assert record is not None and record.gate == "passed" and record.decisions == 2000
    treatment = record.variants["treatment"]
    assert treatment.passed and treatment.policy == "popularity"
    short = next(r for r in treatment.rewards if r.reward == "short_term")
    dr = next(e for e in short.candidate if e.method == "dr")
    assert dr.ci_low <= 0.83 <= dr.ci_high, dr
    baseline = next(e for e in short.baseline if e.method == "dr")
    assert baseline.ci_low <= 0.55 <= baseline.ci_high, baseline
