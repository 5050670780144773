"""`tandem experiments surrogate`: the surrogate fitted from the exposures and events on the topics,
its held-out validity printed, and the model written for the evaluation gate."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue

from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec
from experiments.surrogate import Surrogate
from infra.kafka.config import producer_config
from infra.kafka.topics import EVENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import EventType, Exposure, ListeningEvent
from streams.producer import EventPublisher
from tests.helpers import T0_MS

DAY = 86_400_000
GENRES = ("pop", "rock", "jazz", "latin", "country")


def publish_experiment(settings: Settings, experiment: str, publisher: EventPublisher, rng: random.Random,
                       users: int, start: int = T0_MS) -> None:
    """Treated users discover more genres on day 0; each genre raises the chance of a day-7 return."""
    spec = load_spec(DEMO_SPEC_PATH).model_copy(update={"id": experiment, "salt": f"{experiment}/1"})
    publish_spec(settings, apply_spec(None, spec, who="test", at=start))
    for u in range(users):
        user, variant = f"{experiment}-u{u}", ("control", "treatment")[u % 2]
        anchor = start + rng.randrange(DAY)
        publisher.publish(Exposure(exposure_id=f"{user}-x", experiment=experiment, variant=variant, user_id=user,
                                   ts=anchor), topic=settings.topic(EXPOSURES))
        genres = rng.sample(GENRES, 1 + rng.randrange(2) + 2 * (variant == "treatment"))
        for k, genre in enumerate(genres):
            publisher.publish(ListeningEvent(event_id=f"{user}-p{k}", user_id=user, ts=anchor + 60_000 * (k + 1),
                                             type=EventType.PLAY, item_id=f"{genre}-1", genre=genre,
                                             ms_played=120_000))
        if rng.random() < 0.2 + 0.15 * len(genres):
            publisher.publish(ListeningEvent(event_id=f"{user}-back", user_id=user, ts=anchor + 7 * DAY + 3_600_000,
                                             type=EventType.SESSION_START))


def test_the_surrogate_is_fitted_from_the_topics_and_checked_on_held_out_experiments(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    rng = random.Random(3)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for experiment in ("first", "second"):
            publish_experiment(settings, experiment, publisher, rng, users=200)
        # the newest event time closes every exposure's day-7 interval
        publisher.publish(ListeningEvent(event_id="end", user_id="end", ts=T0_MS + 10 * DAY,
                                         type=EventType.SESSION_START))
    out = tmp_path / "surrogate.json"
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "experiments", "surrogate", "--out", str(out)],
        env={**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
             "TANDEM_TOPIC_PREFIX": settings.topic_prefix},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 400 and report["pending"] == 0
    model = Surrogate.from_state(json.loads(out.read_text(encoding="utf-8")))
    assert model.n == 400 and model.experiments == ("first", "second")
    # 0.15 retention per genre in truth; the day-0 plays are the genres here, so the two share it
    per_genre = model.coefficients["genres_discovered"] + model.coefficients["plays"]
    assert 0.05 < per_genre < 0.25
    rows = report["validity"]["rows"]
    assert [(r["experiment"], r["variant"]) for r in rows] == [("first", "treatment"), ("second", "treatment")]
    for row in rows:
        assert row["realized_effect"]["estimate"] > 0 and row["surrogate_effect"]["estimate"] > 0


def publish_end(settings: Settings, publisher: EventPublisher, ts: int) -> None:
    """An event at ``ts`` on every events partition (keys spread over them), so every one passes it."""
    for k in range(64):
        publisher.publish(ListeningEvent(event_id=f"end-{ts}-{k}", user_id=f"end-{k}", ts=ts,
                                         type=EventType.SESSION_START))


def test_following_the_topics_refits_as_new_outcomes_close(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    rng = random.Random(5)
    out = tmp_path / "surrogate.json"
    follower = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "experiments", "surrogate", "--follow", "--every", "1d",
         "--out", str(out), "--idle-exit", "120"],
        env={**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
             "TANDEM_TOPIC_PREFIX": settings.topic_prefix},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    fits: Queue[dict] = Queue()
    threading.Thread(target=lambda: [fits.put(json.loads(line)) for line in follower.stdout or ()], daemon=True).start()

    def fit_with(rows: int) -> dict:
        while True:
            try:
                fit = fits.get(timeout=120)
            except Empty:
                raise AssertionError(f"no refit with {rows} rows within 120 s") from None
            if fit["rows"] == rows:
                return fit

    try:
        with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
            publish_experiment(settings, "first", publisher, rng, users=200)
            publish_end(settings, publisher, T0_MS + 10 * DAY)
        first = fit_with(200)
        assert first["fitted_at"] == T0_MS + 10 * DAY and first["pending"] == 0
        # weeks later, a second experiment's outcomes arrive: the follower refits with them
        with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
            publish_experiment(settings, "second", publisher, rng, users=200, start=T0_MS + 20 * DAY)
            publish_end(settings, publisher, T0_MS + 30 * DAY)
        second = fit_with(400)
        assert second["fitted_at"] == T0_MS + 30 * DAY
        model = Surrogate.from_state(json.loads(out.read_text(encoding="utf-8")))
        assert model.n == 400 and model.fitted_at == T0_MS + 30 * DAY
        assert model.experiments == ("first", "second") and model.coefficients == second["coefficients"]
        once = subprocess.run(  # the same fit as reading the topics once, to their end
            [sys.executable, "-m", "infra.cli", "experiments", "surrogate"],
            env={**os.environ, "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
                 "TANDEM_TOPIC_PREFIX": settings.topic_prefix},
            capture_output=True, text=True, timeout=300, check=True,
        )
        assert json.loads(once.stdout)["surrogate"] == model.to_state()
    finally:
        follower.send_signal(signal.SIGINT)
        _, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 0, stderr
