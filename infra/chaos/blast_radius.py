"""Scenario 5, blast radius: the experimentation stack's failures do not reach serving, and serving's
overload does not reach the experiment's figures.

Forward: serving takes a fixed 300 rps (quick: 100) for one phase each while (a) the aggregator
works through a backlog, (b) it is SIGKILLed and kept down, (c) it is CPU-starved by a SIGSTOP/SIGCONT
duty cycle, (d) the console is flooded with requests by another process. An (a) phase comes before
and after each disturbed one: a ratio is to the mean p99 of its two neighbours, and the spread of
the (a) phases is the measurement's own noise on this machine. Reported: serving's p99 per phase,
its ratio, and its errors.

Reverse: serving is offered twice the rate it completed when saturated, while a synthetic experiment
log (``experiments.synthetic``, the simulation's exposures and outcomes) is published and aggregated;
the aggregator's published metrics must equal the oracle: the aggregation core applied once, in
memory, to the topics as read after the run (tests/integration/test_aggregator.py does the same).
The overload's requests carry an event time before every experiment, so they expose nobody and
cannot make the log's records late.

    python -m infra.chaos.blast_radius [--quick] [--seed N] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from experiments.aggregation import AggregationStore, SourceRecord
from experiments.aggregation.stats import merge_partials
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec, spec_to_json
from experiments.synthetic import synthetic_log
from infra.chaos.oracles import differences
from infra.chaos.serving_probe import RestartableStack, load, ratio
from infra.demo.run import PROBE_TS, console_cpu_group, demo_specs, publish_experiments
from infra.demo.supervisor import (
    ProcessSpec,
    Supervisor,
    priority,
    session_priority,
    wait_for,
)
from infra.kafka.broker import free_port
from infra.kafka.config import producer_config
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import DEAD_LETTERS, EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, EXPOSURES, apply_topics
from infra.settings import Settings, load_settings
from streams.events import encode

NAME = "blast_radius"
P99_RATIO_TARGET = 1.1
LATENESS_MS = 30 * 60 * 1000
#: SIGSTOP for this long out of every period: the aggregator gets a quarter of the wall clock.
STOPPED_S, PERIOD_S = 0.15, 0.2


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    began = time.monotonic()
    # The priorities `tandem up` would give (TANDEM_EXPERIMENTATION_NICE, TANDEM_CONSOLE_CPU,
    # TANDEM_SERVING_NICE).
    chosen = load_settings()
    group = console_cpu_group(chosen)
    experimentation = Priority(chosen.experimentation_nice, None)
    console = Priority(chosen.experimentation_nice, group)
    priorities: dict[str, object] = {"experimentation_nice": chosen.experimentation_nice,
                                     "console_cpu": chosen.console_cpu,
                                     "console_cpu_group": None if group is None else str(group),
                                     "serving_nice": chosen.serving_nice}
    with RestartableStack(work_dir, topic_prefix="blast.") as stack:
        stack.start_broker()
        publish_experiments(stack.settings, demo_specs(), who="chaos: blast radius")
        url = stack.start_serving(nice=chosen.serving_nice)
        # what the kernel gave (a negative niceness needs root): (niceness, autogroup niceness)
        priorities["serving_process"] = list(priority(stack.supervisor.processes["serving"].pid))
        started_s = time.monotonic() - began
        forward = _forward(stack, url, seed=seed, quick=quick, experimentation=experimentation, console=console)
        forward_s = time.monotonic() - began - started_s
        reverse = _reverse(stack, url, seed=seed, quick=quick, experimentation=experimentation)
    wall = {"start": round(started_s, 1), "forward": round(forward_s, 1),
            "total": round(time.monotonic() - began, 1)}
    ratios = [forward["phases"][phase]["p99_ratio_to_a"] for phase in ("b_killed", "c_starved", "d_console_flood")]
    errors = [forward["phases"][phase]["errors"] for phase in ("b_killed", "c_starved", "d_console_flood")]
    ok = (
        all(count == 0 for count in errors)
        and all(ratio is not None and ratio <= P99_RATIO_TARGET for ratio in ratios)
        and reverse["differences"] == [] and reverse["metric_records"] > 0 and reverse["aggregator_exit"] == 0
        and reverse["dead_letters"] == 0
    )
    rps = forward["rps"]
    return {
        "scenario": NAME,
        "done": f"serving at {rps:.0f} rps while the aggregator ran, was SIGKILLed and kept down, was CPU-starved "
                f"and while the console was flooded; then serving offered twice its capacity while an experiment "
                f"log was aggregated and checked against the oracle",
        "figures": {"forward": forward, "reverse": reverse, "p99_ratio_target": P99_RATIO_TARGET,
                    "priorities": priorities,
                    "wall_s": wall, "machine_load_1m_at_end": round(os.getloadavg()[0], 2)},
        "ok": ok,
    }


# -- forward: serving while the experimentation stack is broken ------------------------------------

class Priority(NamedTuple):
    """Where a process of the experimentation stack runs: its added niceness and CPU group."""

    nice: int
    cpu_group: Path | None


def _forward(stack: RestartableStack, url: str, *, seed: int, quick: bool, experimentation: Priority,
             console: Priority) -> dict[str, Any]:
    rps = 100.0 if quick else 300.0
    phase_s = 2.0 if quick else 20.0
    users = 300 if quick else 3000
    spec = load_spec(DEMO_SPEC_PATH)
    console_port = free_port()
    # The experimentation stack's processes at the priority `tandem up` gives them.
    stack.start("console", "console", "--port", str(console_port), "--no-monitor", **console._asdict())
    console_url = f"http://127.0.0.1:{console_port}"
    wait_for(lambda: _answers(f"{console_url}/api/experiments"), timeout_s=90, what="the console")
    load(url, rps=rps, duration_s=1.0, seed=seed)  # warm every path once, unmeasured

    phases: dict[str, dict[str, Any]] = {}
    seeds = iter(range(seed + 1, seed + 100))

    def measure(name: str) -> None:
        phases[name] = load(url, rps=rps, duration_s=phase_s, seed=next(seeds))

    _publish_log(stack.settings, spec, users=users, seed=seed)
    aggregator = stack.start("aggregator", "experiments", "aggregate", **experimentation._asdict())
    measure("a1_running")

    aggregator.kill()
    aggregator.wait(timeout=30)
    measure("b_killed")

    _publish_log(stack.settings, spec, users=users, seed=seed + 100)
    aggregator = stack.start("aggregator", "experiments", "aggregate", **experimentation._asdict())
    measure("a2_running")
    with DutyCycle(aggregator.pid) as cycle:
        measure("c_starved")
    starved = {"stopped_s": STOPPED_S, "period_s": PERIOD_S, "cycles": cycle.cycles}
    measure("a3_running")

    # The console's users are not on serving's host: their stand-in runs at the lowest priority, in a
    # session (so a scheduling autogroup) of its own: `nice -n 19` inside the harness's session left
    # the harness's group, as a whole, as much CPU as serving's (infra.demo.supervisor.session_priority);
    # and in the console's idle CPU group when there is one.
    flood = subprocess.Popen(
        [sys.executable, "-m", "infra.chaos.blast_radius", "--flood", console_url, "--seconds", str(phase_s + 1.0)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=session_priority(19, cpu_group=console.cpu_group),
    )
    try:
        measure("d_console_flood")
        flooded = json.loads(flood.communicate(timeout=120)[0])
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    measure("a4_running")
    aggregator_alive = aggregator.poll() is None
    # Each disturbed phase against the mean p99 of the undisturbed phases on either side of it: the
    # machine's load drifts, and the spread of the (a) phases is the measurement's own noise.
    around = {"b_killed": ("a1_running", "a2_running"), "c_starved": ("a2_running", "a3_running"),
              "d_console_flood": ("a3_running", "a4_running")}
    summary: dict[str, dict[str, Any]] = {name: _latency(result) for name, result in phases.items()}
    for name, (before, after) in around.items():
        base = _mean(phases[before]["p99_ms"], phases[after]["p99_ms"])
        summary[name]["p99_ratio_to_a"] = ratio(phases[name]["p99_ms"], base)
    running = [phases[name]["p99_ms"] for name in ("a1_running", "a2_running", "a3_running", "a4_running")]
    noise = ratio(max(running), min(running)) if all(running) else None
    return {"rps": rps, "phase_s": phase_s, "phases": summary, "a_phases_p99_max_to_min": noise,
            "starved": starved, "console_flood": flooded, "aggregator_alive_after_duty_cycle": aggregator_alive}


class DutyCycle:
    """SIGSTOP/SIGCONT a process in a loop until the context ends (then it is left running)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cycles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duty-cycle", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self._stop.wait(STOPPED_S)
            os.kill(self.pid, signal.SIGCONT)
            self.cycles += 1
            self._stop.wait(PERIOD_S - STOPPED_S)

    def __enter__(self) -> DutyCycle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.kill(self.pid, signal.SIGCONT)


def flood(url: str, *, seconds: float, concurrency: int = 16) -> dict[str, Any]:
    """As many GETs of the console's pages and API as ``concurrency`` threads can send."""
    paths = ("/experiments", "/api/experiments", "/openapi.json", "/")
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "errors_5xx": 0, "failures": 0}
    lock = threading.Lock()

    def worker(number: int) -> None:
        index = number
        while time.monotonic() < deadline:
            path = paths[index % len(paths)]
            index += 1
            outcome = "requests"
            try:
                with urllib.request.urlopen(url + path, timeout=5) as response:  # noqa: S310 - our loopback URL
                    response.read()
            except urllib.error.HTTPError as exc:
                outcome = "errors_5xx" if exc.code >= 500 else "requests"
            except OSError:
                outcome = "failures"
            with lock:
                counts["requests"] += 1
                if outcome != "requests":
                    counts[outcome] += 1

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return {**counts, "seconds": seconds, "concurrency": concurrency}


# -- reverse: the experiment's figures while serving is overloaded ----------------------------------

def _reverse(stack: RestartableStack, url: str, *, seed: int, quick: bool, experimentation: Priority) -> dict[str, Any]:
    """The experiment under its own topic prefix and state (so the oracle reads its log alone), on
    the same broker and host as the overloaded serving."""
    users = 200 if quick else 2000
    days = 7 if quick else 21
    probe_s = 1.0 if quick else 5.0
    overload_s = 3.0 if quick else 30.0
    spec = load_spec(DEMO_SPEC_PATH)
    settings = stack.settings.model_copy(update={"topic_prefix": "reverse.",
                                                 "state_dir": stack.work_dir / "reverse-state"})
    apply_topics(settings)
    saturated = load(url, rps=1500.0 if quick else 3000.0, duration_s=probe_s, seed=seed, t0_ms=PROBE_TS)
    capacity = max(50.0, float(saturated["achieved_rps"] or 0.0))
    overload: dict[str, Any] = {}

    def overload_serving() -> None:
        overload.update(load(url, rps=2 * capacity, duration_s=overload_s, seed=seed + 1, t0_ms=PROBE_TS))

    env = {"TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(), "TANDEM_STATE_DIR": str(settings.state_dir),
           "TANDEM_TOPIC_PREFIX": settings.topic_prefix}
    with Supervisor(state_dir=settings.state_dir, env=env) as experiment_stack:
        overloading = threading.Thread(target=overload_serving, name="overload")
        overloading.start()
        aggregator = experiment_stack.start(ProcessSpec("aggregator", ("experiments", "aggregate", "--idle-exit", "3"),
                                                        **experimentation._asdict()))
        published = _publish_log(settings, spec, users=users, seed=seed, days=days)
        overloading.join()
        try:
            exit_code: int | None = aggregator.wait(timeout=600)
        except subprocess.TimeoutExpired:
            exit_code = None
    actual = _published_metrics(settings, spec.id)
    expected = oracle_metrics(settings, spec.id)
    letters = [json.loads(record.value) for record in read_topic(settings, settings.topic(DEAD_LETTERS))]
    return {
        "users": users, "days": days, "records_published": published,
        "capacity_rps": capacity, "offered_rps": round(2 * capacity, 1),
        "overload": _latency(overload) if overload else None,
        "aggregator_exit": exit_code,
        "metric_records": len(expected),
        "differences": differences(actual, expected)[:20],
        "dead_letters": len(letters),  # the synthetic log holds no bad record
        "dead_letter_reasons": sorted({str(letter.get("error", ""))[:160] for letter in letters})[:5],
    }


def _publish_log(settings: Settings, spec: ExperimentSpec, *, users: int, seed: int, days: int = 14) -> int:
    """The spec, then a synthetic experiment log in event-time order (no record late); the count."""
    log = synthetic_log(spec, users=users, days=days, seed=seed)
    sent = 0
    with KafkaPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec), topic=settings.topic(EXPERIMENTS))
        # Acknowledged before any exposure is sent, as serving only exposes users to a spec it has read
        # from the topic: sent together, an exposure batch could reach the log first under load, and
        # the aggregator dead-letters an exposure to an experiment it does not know.
        publisher.flush()
        for exposure in log.exposures:
            publisher.publish_bytes(exposure.user_id.encode(), encode(exposure), topic=settings.topic(EXPOSURES))
        for event in log.events:
            publisher.publish_bytes(event.user_id.encode(), encode(event))
        sent = 1 + len(log.exposures) + len(log.events)
    return sent


def oracle_metrics(settings: Settings, experiment: str) -> dict[str, dict[str, Any]]:
    """The aggregation core applied once, in memory, to the topics merged in event time."""
    roles = {EVENTS.name: EVENTS, EXPOSURES.name: EXPOSURES, EXPERIMENTS.name: EXPERIMENTS}
    topics = {role: settings.topic(topic) for role, topic in roles.items()}
    timed: list[tuple[int, str, Any]] = []
    for role, topic in topics.items():
        for record in read_topic(settings, topic):
            try:
                ts = int(json.loads(record.value).get("ts", 0)) if role != EXPERIMENTS.name else 0
            except (ValueError, TypeError, AttributeError):
                ts = 0
            timed.append((ts, role, record))
    timed.sort(key=lambda item: item[0])
    offsets: dict[str, int] = {}
    records = []
    for _, role, record in timed:
        offsets[role] = offsets.get(role, -1) + 1
        records.append(SourceRecord(topics[role], 0, offsets[role], record.key, record.value))
    with AggregationStore(":memory:", allowed_lateness_ms=LATENESS_MS, topics=topics) as store:
        store.apply_batch(records)
        return _without_id(store.metric_records(experiment))


def _published_metrics(settings: Settings, experiment: str) -> dict[str, dict[str, Any]]:
    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    published = [json.loads(record.value) for record in newest.values()]
    return _without_id(r for r in merge_partials(published) if r["experiment"] == experiment)


def _without_id(records: Any) -> dict[str, dict[str, Any]]:
    """By key, without what depends on how records were spread over partitions."""
    return {
        f"{r['experiment']}/{r['variant']}/{r['metric']}": {
            k: v for k, v in r.items() if k not in ("record_id", "watermark_ts")
        }
        for r in records
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


def _latency(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests", "completed", "errors", "error_kinds", "achieved_rps", "p50_ms", "p99_ms", "max_ms")
    return {key: result[key] for key in keys}


def _mean(*values: float | None) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)  # the flooding process of phase (d)
    parser.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(flood(args.flood, seconds=args.seconds)))
        return
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="tandem-chaos-"))
    print(json.dumps(run(work_dir, args.seed, args.quick), indent=2))


if __name__ == "__main__":
    main()
