"""A harmful treatment is stopped automatically mid-run, on the live stack with the real simulator.

Every process of the demo runs (features worker, learner, serving, aggregator, console with its
automatic stop on), on the session's broker. The simulator drives users whose return is made far
less likely when they were first exposed to the treatment (``ModelParams.return_shifts``: -4 on
the logit), against an experiment whose guardrail is day-1 retention (active in [1 d, 2 d) after
first exposure), so windows close from the second simulated day on. The monitor must stop the
experiment while the simulation still runs, record who (``monitor``) and why (the guardrail), and
serving must then serve the control, exposing nobody, for the rest of the run.

Why it cannot fail by chance (P < 1e-4): the monitor's guardrail test is always-valid, so a stop
at any look is as good as at the last; by the last look every one of the ~120 users per arm has a
closed window. Under the model the control's day-1 retention is ~0.9 and the treatment's ~0.2
(this test asserts both rates below, from the run). ``tests/unit/experiments/monitor/test_checks.py``
(``test_a_strong_harm_is_missed_with_probability_below_1e_4``) enumerates the binomial outcomes
of 100 users per arm at retention 0.8 against 0.3 and finds P(no stop) < 1e-4; the per-user
rates here vary around their mean, which only narrows the spread of the counts (a Poisson-binomial
count is less dispersed than the binomial of the same mean).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from experiments.assignment import assign
from experiments.lifecycle import apply_spec, publish_spec, read_specs
from experiments.spec import parse_spec
from infra.demo.run import worker_specs
from infra.demo.supervisor import Supervisor, wait_for
from infra.kafka.broker import free_port
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DEAD_LETTERS, EXPERIMENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from infra.simulation.driver import run_simulation
from infra.simulation.model import DAY_MS, ORIGIN_MS, ModelParams

USERS = 240
HARM = -4.0
SPEC = parse_spec({
    "id": "harmful_ranker", "salt": "harmful_ranker/1", "start": ORIGIN_MS - 7 * DAY_MS,
    "end": ORIGIN_MS + 60 * DAY_MS, "control": "control", "surface": "home",
    "variants": [{"name": "control", "weight": 0.5, "policy": "popularity", "policy_params": {"epsilon": 0.6}},
                 {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
    "metrics": [
        {"name": "plays_2d", "role": "success", "kind": "mean", "direction": "increase", "measure": "plays",
         "window": {"length": "2d"}},
        {"name": "retention_d1", "role": "guardrail", "kind": "proportion", "direction": "increase",
         "measure": "active", "window": {"delay": "1d", "length": "1d"}, "margin": 0.01},
    ],
})


def http(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - our loopback URL
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return dict(json.load(response))


def serving_caught_up(url: str) -> bool:
    """Serving answers and has read the experiments topic to its end (it exposes from the first request)."""
    try:
        return bool(http("GET", f"{url}/health")["live_config"]["caught_up"])
    except (OSError, ValueError, KeyError):
        return False


def answers(url: str) -> bool:
    try:
        http("GET", url)
    except (OSError, ValueError):
        return False
    return True


@pytest.mark.timeout(600)
def test_a_harmful_treatment_is_stopped_mid_run_and_serving_serves_the_control(settings: Settings) -> None:
    apply_topics(settings)
    publish_spec(settings, apply_spec(None, SPEC, who="owner", at=ORIGIN_MS))
    serve_port, console_port = free_port(), free_port()
    serve_url, console_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{console_port}"
    env = {"TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(), "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
           "TANDEM_STATE_DIR": str(settings.state_dir)}
    status_by_day: dict[int, str] = {}

    def on_day(message: str) -> None:
        """Once per simulated day: the experiment's status as the console answers it then."""
        head = message.split(":", 1)[0].split()
        if len(head) == 2 and head[0] == "day":
            status_by_day[int(head[1])] = http("GET", f"{console_url}/api/experiments/{SPEC.id}")["status"]

    with Supervisor(state_dir=Path(settings.state_dir), env=env) as supervisor:
        for process in worker_specs(serve_port, console_port, auto_stop=True).values():
            supervisor.start(process)
        wait_for(lambda: serving_caught_up(serve_url), timeout_s=120, what="serving, with the experiment read")
        wait_for(lambda: answers(f"{console_url}/api/experiments/{SPEC.id}"), timeout_s=120, what="the console")
        result = asyncio.run(run_simulation(
            settings=settings, serve_url=serve_url, users=USERS, seed=11, specs=[SPEC], progress=on_day,
            params=ModelParams(arrival_ms=2 * DAY_MS, return_shifts=((SPEC.id, "treatment", HARM),)),
            min_step_wall_s=0.1,
        ))
        supervisor.check()
        detail = http("GET", f"{console_url}/api/experiments/{SPEC.id}")
        treated = next(f"late-{i}" for i in range(10_000) if assign(SPEC, f"late-{i}") == "treatment")
        after = http("POST", f"{serve_url}/recommend", {"user_id": treated, "ts": result.end_ms})

    # Stopped mid-run: days of simulation followed the stop.
    stopped_days = sorted(day for day, status in status_by_day.items() if status == "stopped")
    last_day = max(status_by_day)
    assert stopped_days and stopped_days == list(range(stopped_days[0], last_day + 1)), status_by_day
    assert stopped_days[0] <= last_day - 3, status_by_day
    # Recorded: by the monitor, for the guardrail, on the experiments topic.
    stop = detail["history"][-1]
    assert detail["status"] == "stopped" and stop["who"] == "monitor", detail["history"]
    assert "guardrails: retention_d1 is significantly worse in treatment" in stop["why"], stop["why"]
    on_topic = read_specs(settings)[SPEC.id]
    assert on_topic.status == "stopped" and on_topic.history[-1].who == "monitor"
    # The harm as this run realized it (the model's expected rates, 0.85 and 0.14, are checked in
    # tests/unit/infra/simulation/test_offline.py; 0.3 is over 7 standard deviations below their gap).
    rows = {m["name"]: m for m in detail["statistics"]["metrics"]}["retention_d1"]["variants"]
    rates = {row["name"]: row["mean"] for row in rows}
    assert rates["control"] - rates["treatment"] > 0.3, rates
    # Serving then serves the control and exposes nobody: no exposure from two days after the stop
    # was seen on, while users kept listening; a treated user asking now gets the control's policy.
    since = ORIGIN_MS + (stopped_days[0] + 2) * DAY_MS
    exposures = [json.loads(r.value) for r in read_topic(settings, settings.topic(EXPOSURES)) if r.value]
    assert exposures and not [x for x in exposures if x["ts"] >= since]
    assert result.sessions > 0 and result.end_ms > since
    assert after["experiment"] is None and after["exposed"] == {} and after["policy"] == "popularity", after
    # Every version of the lifecycle was accepted downstream: nothing of the experiments topic dead-lettered.
    rejected = [r for r in read_topic(settings, settings.topic(DEAD_LETTERS))
                if r.value and json.loads(r.value)["source_topic"] == settings.topic(EXPERIMENTS)]
    assert rejected == []
