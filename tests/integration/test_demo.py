"""The main job, shortened: both stacks live, ground truth, a fault, and nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.demo.run import DemoOptions, run
from infra.kafka.broker import pid_alive
from infra.settings import load_settings

USERS = 700


def without_run_specifics(records: list[dict]) -> dict[str, dict]:
    return {
        f"{r['variant']}/{r['metric']}": {k: v for k, v in r.items() if k not in ("record_id",)} for r in records
    }


@pytest.mark.timeout(600)
def test_shortened_run_matches_the_truth_and_survives_an_aggregator_sigkill(tmp_path: Path) -> None:
    options = DemoOptions(
        users=USERS, seed=11, out_dir=tmp_path / "report", state_dir=tmp_path / "state",
        kill_aggregator_on_day=3, replay_check=True,
    )
    result = run(settings=load_settings({}), options=options)
    truth = result.simulation.truth

    # Ground truth: the bandit wins plays and loses day-7 retention, so the report says do not ship.
    assert truth["decision"] == "do_not_ship"
    assert result.report["decision"]["verdict"] == truth["decision"], result.table
    assert result.report["srm"]["passed"] is True
    for metric in result.report["metrics"]:
        (comparison,) = metric["comparisons"]
        true_effect = truth["metrics"][metric["name"]]["effects"]["treatment"]["absolute"]
        interval = comparison["absolute"]
        assert interval["ci_low"] <= true_effect <= interval["ci_high"], (metric["name"], interval, true_effect)

    # Isolation: the aggregator was SIGKILLed and restarted mid-run; serving never noticed.
    assert result.aggregator_killed_at is not None
    before = result.probe.summary(until=result.aggregator_killed_at)
    during = result.probe.summary(since=result.aggregator_killed_at, until=result.aggregator_killed_at + 10)
    assert before["requests"] > 10 and during["requests"] > 10
    assert before["errors"] == during["errors"] == 0
    assert during["p99_ms"] <= max(3 * before["p99_ms"], 100.0), (before, during)

    # ...and its figures equal an undisturbed aggregation of the same topics.
    assert result.replayed_metrics is not None
    assert without_run_specifics(result.live_metrics) == without_run_specifics(result.replayed_metrics)

    # Every process the run started is gone: broker, four workers and the restarted aggregator.
    assert len(result.pids) == 6
    assert [pid for pid in result.pids if pid_alive(pid)] == []


def test_an_interrupted_run_stops_every_process_it_started(tmp_path: Path) -> None:
    log_path = tmp_path / "demo.log"
    env = {**os.environ, "TANDEM_STATE_DIR": str(tmp_path / "state")}
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "demo", "--users", "300", "--out", str(tmp_path / "report")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "serving API ready" not in log_path.read_text() and time.monotonic() < deadline:
            assert demo.poll() is None, log_path.read_text()
            time.sleep(0.2)
        time.sleep(2)  # into the simulation
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    text = log_path.read_text()
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", text)]
    assert len(pids) == 5, text  # the broker and four workers
    time.sleep(0.5)
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert demo.returncode != 0
