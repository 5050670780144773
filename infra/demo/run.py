"""The main job (``make demo``): both stacks live on an embedded broker, a simulated population,
and the experiment report that catches a bandit winning plays and losing retention.

Everything it starts it stops, also on Ctrl-C: the broker is a context manager,
the four workers run under a ``Supervisor``, each in its own process and log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.report.owner import run_report
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec, spec_to_json
from infra.demo.supervisor import ProcessSpec, Supervisor, wait_for
from infra.kafka.broker import EmbeddedBroker, free_port
from infra.kafka.config import producer_config
from infra.kafka.producer import KafkaPublisher
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EXPERIMENT_METRICS, EXPERIMENTS, apply_topics
from infra.settings import Settings
from infra.simulation.driver import SimulationResult, run_simulation
from infra.simulation.truth import write_truth

logger = logging.getLogger(__name__)

SPEC_PATH = DEMO_SPEC_PATH


@dataclass(frozen=True)
class DemoOptions:
    users: int = 1500
    seed: int = 7
    out_dir: Path = Path("report")
    state_dir: Path = Path(".tandem/demo")
    #: SIGKILL the aggregator once, when the simulation reaches this day, then restart it.
    kill_aggregator_on_day: int | None = None
    #: After the run, aggregate the same topics again, undisturbed, into a fresh database.
    replay_check: bool = False
    #: Wall seconds at least per simulated hour: the learner's snapshots must reach serving
    #: while the experiment runs, as they would in real time.
    step_wall_s: float = 0.2


@dataclass
class DemoResult:
    simulation: SimulationResult
    report: dict[str, Any]
    table: str
    wall_s: float
    probe: LatencyProbe
    aggregator_killed_at: float | None  # monotonic time of the SIGKILL, if any
    live_metrics: list[dict[str, Any]]  # the experiment-metrics topic, newest per key
    replayed_metrics: list[dict[str, Any]] | None  # an undisturbed aggregation of the same topics
    pids: list[int]  # the broker's and every worker's, restarts included


class LatencyProbe(threading.Thread):
    """Asks serving for a recommendation every ``interval_s`` and records latency and errors.

    Without an event time the request falls outside the experiment, so the probe is
    never exposed and changes no experiment figure.
    """

    def __init__(self, url: str, *, interval_s: float = 0.05) -> None:
        super().__init__(name="serving-probe", daemon=True)
        self.url = url
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, bool]] = []  # (monotonic time, ms, ok)
        self._stop_event = threading.Event()

    def run(self) -> None:
        body = json.dumps({"user_id": "latency-probe"}).encode()
        while not self._stop_event.wait(self.interval_s):
            request = urllib.request.Request(  # noqa: S310 - our loopback URL
                f"{self.url}/recommend", data=body, headers={"Content-Type": "application/json"}
            )
            began = time.monotonic()
            try:
                # Generous: a slow answer is recorded as its latency; an error is a failed request.
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    ok = response.status == 200
            except OSError:
                ok = False
            self.samples.append((began, (time.monotonic() - began) * 1000, ok))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def summary(self, *, since: float | None = None, until: float | None = None) -> dict[str, float]:
        window = [
            (ms, ok) for t, ms, ok in self.samples
            if (since is None or t >= since) and (until is None or t < until)
        ]
        latencies = sorted(ms for ms, _ in window)
        if not latencies:
            return {"requests": 0, "errors": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
        return {
            "requests": len(window),
            "errors": sum(not ok for _, ok in window),
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        }


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def worker_specs(serve_port: int) -> dict[str, ProcessSpec]:
    return {
        "personalization": ProcessSpec("personalization", ("features", "run")),
        "learner": ProcessSpec("learner", ("learner", "run")),
        "serving": ProcessSpec("serving", ("serve", "--port", str(serve_port))),
        "experiments": ProcessSpec("experiments", ("experiments", "aggregate", "--allowed-lateness", "30m")),
    }


def _serving_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200 and json.load(response)["live_config"]["caught_up"])
    except (OSError, ValueError, KeyError):
        return False


def _windows_closed(settings: Settings, experiment: str) -> bool:
    values = _metric_records(settings, experiment)
    return bool(values) and all(v["in_progress"] == 0 and v["n"] > 0 for v in values)


def run(*, settings: Settings, options: DemoOptions) -> DemoResult:
    started = time.monotonic()
    spec = load_spec(SPEC_PATH)
    shutil.rmtree(options.state_dir, ignore_errors=True)
    options.state_dir.mkdir(parents=True)
    with EmbeddedBroker(binary=settings.broker_binary, log_path=options.state_dir / "broker.log") as broker:
        settings = settings.model_copy(
            update={"bootstrap_servers": broker.bootstrap, "state_dir": options.state_dir.resolve()}
        )
        say(f"embedded broker on {broker.bootstrap}; logs in {options.state_dir / 'logs'}")
        _publish_experiment(settings, spec)
        port = free_port()
        with Supervisor(state_dir=settings.state_dir, env=_worker_env(settings, broker.bootstrap)) as supervisor:
            specs = _start_workers(supervisor, port)
            driven = _drive(settings, options, supervisor, specs, serve_url=f"http://127.0.0.1:{port}")
            say("waiting for the aggregator to close every metric window")
            wait_for(lambda: _windows_closed(settings, spec.id), timeout_s=120, interval_s=1.0,
                     what="every metric window closed")
            files = run_report(settings=settings, experiment=spec.id, out_dir=options.out_dir)
            live_metrics = _metric_records(settings, spec.id)
            replayed = _replay(settings, spec.id) if options.replay_check else None
            pids = [broker.pid, *supervisor.started_pids]
        write_truth(options.out_dir / f"{spec.id}-truth.json", driven.simulation.truth)
        write_learning_curve_png(driven.simulation.learning_curve, options.out_dir / f"{spec.id}-learning-curve.png")
    return DemoResult(
        driven.simulation, files.report, files.table, time.monotonic() - started, driven.probe,
        driven.killed[0] if driven.killed else None, live_metrics, replayed, pids,
    )


def _publish_experiment(settings: Settings, spec: ExperimentSpec) -> None:
    apply_topics(settings)
    with KafkaPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec))
    say(f"experiment {spec.id}: " + ", ".join(f"{v.name} serves {v.policy}" for v in spec.variants))


def _worker_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """What the workers need to find this run's broker, state and topics."""
    return {
        "TANDEM_BOOTSTRAP_SERVERS": bootstrap,
        "TANDEM_STATE_DIR": str(settings.state_dir),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
    }


def _start_workers(supervisor: Supervisor, port: int) -> dict[str, ProcessSpec]:
    specs = worker_specs(port)
    for process in specs.values():
        supervisor.start(process)
    say("started features worker, learner, serving API and experiment aggregator (4 processes)")
    serve_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _serving_ready(serve_url), timeout_s=90, what="the serving API's health")
    say(f"serving API ready on {serve_url}")
    return specs


@dataclass
class _DrivenRun:
    simulation: SimulationResult
    probe: LatencyProbe
    killed: list[float]  # monotonic time of the aggregator's SIGKILL, if it was killed


def _drive(settings: Settings, options: DemoOptions, supervisor: Supervisor, specs: dict[str, ProcessSpec],
           *, serve_url: str) -> _DrivenRun:
    """The simulated users against the live stack, with serving's latency probed throughout."""
    probe = LatencyProbe(serve_url)
    probe.start()
    killed: list[float] = []
    try:
        simulation = asyncio.run(_simulate(settings, serve_url, options, supervisor, specs["experiments"], killed))
    finally:
        probe.stop()
    supervisor.check()
    say(
        f"simulated {simulation.users} users: {simulation.recommendations} recommendations, "
        f"{simulation.events_published} events, serving errors {sum(simulation.serving_errors.values())}"
    )
    return _DrivenRun(simulation, probe, killed)


def _metric_records(settings: Settings, experiment: str) -> list[dict[str, Any]]:
    """The totals: the newest partial of each partition, summed (docs/aggregation.md)."""
    from experiments.aggregation.stats import merge_partials

    records = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    return merge_partials(
        [json.loads(r.value) for k, r in records.items() if k and k.decode().startswith(f"{experiment}/")]
    )


def _replay(settings: Settings, experiment: str) -> list[dict[str, Any]]:
    """The same topics aggregated again by an aggregator that was never disturbed (nothing published)."""
    from experiments.aggregation.aggregator import Aggregator, open_store

    replay = settings.model_copy(update={"state_dir": settings.state_dir / "replay"})
    say("replaying the same topics through an undisturbed aggregator, for comparison")
    Aggregator(settings=replay, group=f"{settings.topic_prefix}replay-check", publish=False).run(idle_exit_s=3.0)
    with open_store(replay) as store:
        return store.metric_records(experiment)


async def _simulate(
    settings: Settings,
    serve_url: str,
    options: DemoOptions,
    supervisor: Supervisor,
    aggregator: ProcessSpec,
    killed: list[float],
) -> SimulationResult:
    def progress(message: str) -> None:
        say(message)
        day = _simulated_day(message)
        if options.kill_aggregator_on_day is not None and not killed and day == options.kill_aggregator_on_day:
            killed.append(time.monotonic())
            supervisor.kill("experiments")
            say("SIGKILLed the experiment aggregator mid-run; restarting it")
            supervisor.start(aggregator)

    return await run_simulation(
        settings=settings, serve_url=serve_url, users=options.users, seed=options.seed, progress=progress,
        min_step_wall_s=options.step_wall_s, before_experiment=lambda: _features_caught_up(settings),
    )


async def _features_caught_up(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until the features worker has every pre-period event online (its status file says
    no lag and nothing waiting) and the learner has read them all: day 0's first requests then
    read up-to-date features, and the learner is not days behind the first decisions."""
    from streams.worker.learner.app import learner_status_path
    from streams.worker.status import read_status, status_path

    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        features = read_status(status_path(settings)) or {}
        learner = read_status(learner_status_path(settings)) or {}
        if (features.get("processed", 0) > 0 and features.get("lag") == 0 and features.get("waiting") == 0
                and learner.get("lag") == 0):
            say(f"features worker and learner caught up with the pre-period after {time.monotonic() - began:.1f} s")
            return
        await asyncio.sleep(0.2)
    say(f"features worker or learner still behind after {timeout_s:.0f} s; starting the experiment anyway")


def _simulated_day(message: str) -> int | None:
    """The day of a progress line such as ``day +3: 812 sessions, ...``."""
    head = message.split(":", 1)[0].split()
    if len(head) == 2 and head[0] == "day":
        try:
            return int(head[1])
        except ValueError:
            return None
    return None


def write_learning_curve_png(curve: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5))
    axes = figure.add_subplot()
    for variant in sorted({row["variant"] for row in curve}):
        rows = [row for row in curve if row["variant"] == variant]
        axes.plot([row["day"] for row in rows], [row["play_rate"] for row in rows], marker="o", label=variant)
    axes.set_xlabel("simulated day")
    axes.set_ylabel("play rate of recommendations")
    axes.set_title("learning curve: treatment's bandit against control's popularity")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def run_demo(*, settings: Settings, options: DemoOptions | None = None) -> int:
    options = options or DemoOptions()
    result = run(settings=settings, options=options)
    print(result.table, flush=True)
    truth = result.simulation.truth
    say(f"ground truth (the simulator's model): decision {truth['decision']}")
    for name, metric in truth["metrics"].items():
        for variant, effect in metric["effects"].items():
            say(f"  {name} {variant}: true relative effect {effect['relative']:+.2%} ({effect['verdict']})")
    say("learning curve: play rate of recommendations by simulated day")
    curve = result.simulation.learning_curve
    for day in sorted({row["day"] for row in curve}):
        rates = "  ".join(f"{row['variant']} {row['play_rate']:.2f}" for row in curve if row["day"] == day)
        say(f"  day {day:+d}: {rates}")
    say(f"serving probe during the run: {json.dumps(result.probe.summary())}")
    verdict = result.report["decision"]["verdict"]
    say(f"report decision: {verdict}; truth: {truth['decision']}; wall time {result.wall_s:.0f} s")
    say(f"wrote {options.out_dir}/")
    return 0 if verdict == truth["decision"] else 1


def postgres_data_dir(settings: Settings) -> Path:
    return settings.state_dir / "postgres"


def start_detached(*, settings: Settings, port: int, store: str = "sqlite") -> int:
    """``tandem up``: the same processes as the demo, left running; ``tandem down`` stops them.
    With ``store="postgres"`` the aggregator keeps its state in an embedded PostgreSQL server
    (``infra.postgres``) unless ``TANDEM_POSTGRES_DSN`` already names one."""
    from infra.kafka import broker

    if settings.embedded and not settings.bootstrap_servers:
        state = broker.daemon_up(state_file=settings.broker_state_file, binary=settings.broker_binary)
        settings = settings.model_copy(update={"bootstrap_servers": str(state["bootstrap"])})
    apply_topics(settings)
    spec = load_spec(SPEC_PATH)
    with KafkaPublisher(config=producer_config(settings), topic=settings.topic(EXPERIMENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec))
    children = {
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_STATE_DIR": str(settings.state_dir.resolve()),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
    }
    if store == "postgres":
        if settings.postgres_dsn is not None:
            children["TANDEM_POSTGRES_DSN"] = settings.postgres_dsn.get_secret_value()
        else:
            from infra.postgres import EmbeddedPostgres

            server = EmbeddedPostgres(data_dir=postgres_data_dir(settings)).start()  # pg_ctl detaches it
            children["TANDEM_POSTGRES_DSN"] = server.dsn
            print(f"postgres {server.dsn} (data in {server.data_dir})")
    supervisor = Supervisor(state_dir=settings.state_dir, env=children)
    for process in worker_specs(port).values():
        supervisor.start(process)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _serving_ready(url), timeout_s=90, what="the serving API's health")
    print(f"broker {settings.resolved_bootstrap()}; serving {url}; logs in {supervisor.log_dir}")
    print(f"try: tandem simulate --serve-url {url} --users 300; tandem report {spec.id}; tandem down")
    return 0
