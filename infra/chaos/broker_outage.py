"""Scenario 2, broker outage: the broker stops for 30 s (quick: 3 s) and comes back at the same address.

Serving (``tandem serve`` with a bounded buffer) takes fixed-rate load throughout: before, during the
outage (p99 and errors reported), and the harness then waits for the buffer to reach the returned
broker. The embedded broker keeps its log in memory, so it returns with a new, empty log: the
buffered records are the first records of that log, and the records serving had delivered before
the outage are gone with the old one. The aggregator, which built state from the old log before the
outage, must then refuse to start (``StaleState``), its state kept.

Oracle, from the topics and serving's own counters after the run: every record buffered during the
outage was acknowledged and is on the new log (per topic), the overflow past the bound equals the
counter on ``/metrics``, and no request failed.

    python -m infra.chaos.broker_outage [--quick] [--seed N] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.chaos.serving_probe import RestartableStack, health, load, metric_total, ratio
from infra.demo.run import demo_specs, publish_experiments
from infra.demo.supervisor import tandem_argv, wait_for
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EXPOSURES

NAME = "broker_outage"
LOGGED = (DECISIONS, EXPOSURES)


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    outage_s = 3.0 if quick else 30.0
    rps = 50.0 if quick else 300.0
    baseline_s = 2.0 if quick else 10.0
    # A request logs a decision and ~3 exposures: about half of the outage's records fit, so both
    # buffering and overflow are exercised.
    max_pending = int(rps * outage_s * 2)
    with RestartableStack(work_dir, topic_prefix="outage.") as stack:
        stack.start_broker()
        publish_experiments(stack.settings, demo_specs(), who="chaos: broker outage")
        url = stack.start_serving("--max-pending", str(max_pending))
        baseline = load(url, rps=rps, duration_s=baseline_s, warmup_s=1.0, seed=seed)
        first = aggregate_once(stack)
        wait_for(lambda: _pending(url) == 0, timeout_s=60, what="serving's log to drain before the outage")
        before = _decision_log(url)

        stack.stop_broker()
        outage_started = time.monotonic()
        during = load(url, rps=rps, duration_s=outage_s, seed=seed + 1)
        at_end = _decision_log(url)
        overflow_on_metrics = metric_total(url, "tandem_serving_records_overflowed")
        outage_wall_s = time.monotonic() - outage_started

        stack.start_broker()  # same address, new empty log; topics provisioned as `tandem up` would
        drained = _wait_drained(url, timeout_s=150)
        after = _decision_log(url)
        on_new_log = {topic.name: len(read_topic(stack.settings, stack.settings.topic(topic))) for topic in LOGGED}
        second = aggregate_once(stack)

    # Serving's log had drained before the outage, so what it accepted since is what it buffered.
    buffered = {kind: at_end["offered"].get(kind, 0) - before["offered"].get(kind, 0) for kind in on_new_log}
    delivered = {kind: after["acknowledged"].get(kind, 0) - before["acknowledged"].get(kind, 0) for kind in on_new_log}
    overflowed = sum(at_end["overflowed"].values()) - sum(before["overflowed"].values())
    failed = sum(after["failed"].values()) - sum(before["failed"].values())
    refused = second["returncode"] == 2 and "was built from broker log" in second["stderr"]
    figures: dict[str, Any] = {
        "rps": rps,
        "outage_s": outage_s,
        "outage_wall_s": round(outage_wall_s, 1),
        "max_pending": max_pending,
        "baseline": _latency(baseline),
        "during_outage": _latency(during),
        "p99_ratio_outage_to_baseline": ratio(during["p99_ms"], baseline["p99_ms"]),
        "buffered_during_outage": buffered,
        "overflowed": overflowed,
        "overflowed_on_metrics": overflow_on_metrics,
        "drained_after_s": drained,
        "delivered_after_return": delivered,
        "records_on_new_log": on_new_log,
        "failed_deliveries": failed,
        "aggregator_first_run_exit": first["returncode"],
        "aggregator_after_return_exit": second["returncode"],
        "aggregator_refusal": second["stderr"].strip().splitlines()[-1][:400] if second["stderr"].strip() else "",
        "new_log_note": "the returned embedded broker has an empty log: the buffered records are its first "
                        "records, everything delivered before the outage is gone with the old log",
    }
    ok = (
        baseline["errors"] == 0 and during["errors"] == 0 and during["completed"] == during["requests"]
        and overflowed > 0 and overflow_on_metrics == overflowed and failed == 0
        and drained is not None and delivered == buffered == on_new_log
        and first["returncode"] == 0 and refused
    )
    return {
        "scenario": NAME,
        "done": f"serving at {rps:.0f} rps while the broker stopped for {outage_s:.0f} s and came back empty at "
                f"the same address; the buffer (bound {max_pending}) delivered, the aggregator refused the old "
                f"log's state",
        "figures": figures,
        "ok": ok,
    }


def aggregate_once(stack: RestartableStack) -> dict[str, Any]:
    """``tandem experiments aggregate`` until idle: its exit code and stderr."""
    import os

    finished = subprocess.run(
        tandem_argv("experiments", "aggregate", "--idle-exit", "1"), env={**os.environ, **stack.env()},
        capture_output=True, text=True, timeout=180, check=False,
    )
    return {"returncode": finished.returncode, "stderr": finished.stderr}


def _decision_log(url: str) -> dict[str, Any]:
    answer = health(url)
    if answer is None:
        raise RuntimeError(f"serving at {url} stopped answering /health")
    log: dict[str, Any] = answer["decision_log"]
    return log


def _pending(url: str) -> int | None:
    answer = health(url)
    return None if answer is None else int(answer["decision_log"]["pending"])


def _wait_drained(url: str, *, timeout_s: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if _pending(url) == 0:
            return round(time.monotonic() - began, 2)
        time.sleep(0.2)
    return None


def _latency(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests", "completed", "errors", "error_kinds", "achieved_rps", "p50_ms", "p99_ms", "max_ms")
    return {key: result[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="tandem-chaos-"))
    print(json.dumps(run(work_dir, args.seed, args.quick), indent=2))


if __name__ == "__main__":
    main()
