"""The main job (``make demo``): both stacks live on an embedded broker, a simulated population,
three concurrent experiments on the home surface (the ranker, the layout, and the surface's
holdout), and the reports that catch a bandit winning plays and losing retention.

Everything it starts it stops, also on Ctrl-C: the broker is a context manager,
the five workers run under a ``Supervisor``, each in its own process and log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import threading
import time
import urllib.request
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from experiments.admission import admit
from experiments.lifecycle import apply_spec, publish_spec, read_specs
from experiments.ope.calibration import calibration_rows
from experiments.report.interactions import Interaction, interactions_from_topics
from experiments.report.owner import run_report
from experiments.spec import DEMO_SPEC_PATHS, ExperimentSpec, load_spec
from experiments.surfaces import load_surfaces
from infra.demo.against_truth import decisions_against_truth as against_truth
from infra.demo.against_truth import describe_row, render_variants
from infra.demo.gate import history_evaluation
from infra.demo.supervisor import EXPERIMENTATION_NICE, ProcessSpec, Supervisor, idle_cpu_group, wait_for
from infra.errors import StaleState
from infra.kafka.broker import EmbeddedBroker, free_port
from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import EXPERIMENT_METRICS, apply_topics
from infra.settings import Settings
from infra.simulation.driver import SimulationResult, run_simulation
from infra.simulation.model import DAY_MS, ORIGIN_MS, ModelParams
from infra.simulation.truth import write_truth

if TYPE_CHECKING:
    from experiments.batch import CheckResult

logger = logging.getLogger(__name__)


def demo_specs() -> list[ExperimentSpec]:
    """The demo's experiments, the ranker experiment first (the learning curve follows it)."""
    return [load_spec(path) for path in DEMO_SPEC_PATHS]


def gated_specs(specs: list[ExperimentSpec]) -> list[ExperimentSpec]:
    """Each spec with the evaluation gate's record, computed before it serves on the simulated archive
    (``infra.demo.gate``); a spec whose variants all serve the control's policy carries none."""
    out = []
    for spec in specs:
        began = time.monotonic()
        evaluation = history_evaluation(spec)
        if evaluation is not None:
            say(f"evaluation gate of {spec.id} on the simulated archive ({evaluation.decisions} logged decisions, "
                f"{time.monotonic() - began:.0f} s): {evaluation.gate}")
            for name, variant in evaluation.variants.items():
                say(f"  {name} ({variant.policy}): {'passes' if variant.passed else '; '.join(variant.reasons)}")
            spec = spec.model_copy(update={"evaluation": evaluation})
        out.append(spec)
    return out


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
    #: Users arrive (are first exposed) over this many days, so metric windows close day after
    #: day and the console's lift over time has a point per day.
    arrival_days: int = 4
    #: Called with the console's address once the report is written, while every process runs.
    while_live: Callable[[ConsoleAccess], None] | None = field(default=None, compare=False)
    #: A progress bar over the simulated days (on the terminal's standard error).
    progress_bar: bool = True
    #: Let the console stop an experiment by itself. Off in the demo: its experiments are near the null,
    #: where the monitor stops one with probability up to alpha (5 %); a stop mid-run cuts the later
    #: arrivals out and would make the decisions checked against the truth flaky (docs/console.md).
    auto_stop: bool = False
    #: After the run, archive the topics and recompute every metric in batch: stream = batch.
    batch_check: bool = True


@dataclass(frozen=True)
class ConsoleAccess:
    """Where the demo's console answers, and the token its write endpoints need."""

    url: str
    token: str
    serve_url: str


@dataclass
class DemoResult:
    simulation: SimulationResult
    report: dict[str, Any]  # of the ranker experiment
    table: str
    reports: dict[str, dict[str, Any]]  # of every experiment
    tables: dict[str, str]
    wall_s: float
    probe: LatencyProbe
    aggregator_killed_at: float | None  # monotonic time of the SIGKILL, if any
    live_metrics: list[dict[str, Any]]  # the experiment-metrics topic, newest per key, every experiment
    console: dict[str, dict[str, Any]]  # each experiment as the console answered after its restart
    replayed_metrics: list[dict[str, Any]] | None  # an undisturbed aggregation of the same topics
    pids: list[int]  # the broker's and every worker's, restarts included
    interactions: list[Interaction]  # between every pair of the concurrent experiments
    consistency: dict[str, CheckResult]  # per experiment: the stream's figures against the archive's
    specs: list[ExperimentSpec] = field(default_factory=list)  # as published, the gate's record with them


#: The probe's event time: 2025-01-01, before the demo's experiments (and its simulated days).
PROBE_TS = 1_735_689_600_000


class LatencyProbe(threading.Thread):
    """Asks serving for a recommendation every ``interval_s`` and records latency and errors.

    It asks at an event time before every experiment starts (``PROBE_TS``), so the probe is
    never assigned or exposed and changes no experiment figure, and no watermark: with the
    wall clock it would be exposed at today's date, a window the simulation never closes.
    """

    def __init__(self, url: str, *, interval_s: float = 0.05) -> None:
        super().__init__(name="serving-probe", daemon=True)
        self.url = url
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, bool]] = []  # (monotonic time, ms, ok)
        self._stop_event = threading.Event()

    def run(self) -> None:
        body = json.dumps({"user_id": "latency-probe", "ts": PROBE_TS}).encode()
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


def worker_specs(serve_port: int, console_port: int | None = None, *, auto_stop: bool = True,
                 experimentation_nice: int = EXPERIMENTATION_NICE, serving_nice: int = 0,
                 console_cpu_group: Path | None = None) -> dict[str, ProcessSpec]:
    """The processes of ``tandem up`` and the demo; the experimentation stack (aggregator, console)
    at ``experimentation_nice`` (``TANDEM_EXPERIMENTATION_NICE``), the console in
    ``console_cpu_group`` (``TANDEM_CONSOLE_CPU``), serving at ``serving_nice``
    (``TANDEM_SERVING_NICE``, below 0 only with root or CAP_SYS_NICE)."""
    specs = {
        "personalization": ProcessSpec("personalization", ("features", "run")),
        "learner": ProcessSpec("learner", ("learner", "run")),
        "serving": ProcessSpec("serving", ("serve", "--port", str(serve_port)), nice=serving_nice),
        "experiments": ProcessSpec("experiments", ("experiments", "aggregate", "--allowed-lateness", "30m"),
                                   nice=experimentation_nice),
    }
    if console_port is not None:
        specs["console"] = ProcessSpec("console", ("console", "--port", str(console_port),
                                                   *(() if auto_stop else ("--no-monitor",))),
                                       nice=experimentation_nice, cpu_group=console_cpu_group)
    return specs


def settings_worker_specs(settings: Settings, serve_port: int, console_port: int | None = None, *,
                          auto_stop: bool = True) -> dict[str, ProcessSpec]:
    """``worker_specs`` with the priorities the settings give."""
    return worker_specs(serve_port, console_port, auto_stop=auto_stop,
                        experimentation_nice=settings.experimentation_nice, serving_nice=settings.serving_nice,
                        console_cpu_group=console_cpu_group(settings))


def console_cpu_group(settings: Settings) -> Path | None:
    """The console's CPU group (``TANDEM_CONSOLE_CPU``): the idle one, where it can be made."""
    if settings.console_cpu != "idle":
        return None
    group = idle_cpu_group("console")
    if group is None:
        logger.warning("no idle CPU group can be made here (it needs root and a cpu cgroup controller): "
                       "the console runs at its niceness only")
    return group


def _serving_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200 and json.load(response)["live_config"]["caught_up"])
    except (OSError, ValueError, KeyError):
        return False


#: The wait for the windows fails only after this long without any metric record changing: a
#: larger demo takes longer to aggregate, and a fixed deadline failed 4,500-user runs mid-way.
WINDOWS_STALL_S = 120.0
#: The demo fails when neither the features worker nor the learner moved for this long before day 0.
PRE_PERIOD_STALL_S = 120.0


class StallClock:
    """Whether a figure read again and again has not changed for ``stall_s`` seconds."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._last: object = None
        self._moved_at = time.monotonic()

    def stalled(self, progress: object) -> bool:
        if progress != self._last:
            self._last, self._moved_at = progress, time.monotonic()
            return False
        return time.monotonic() - self._moved_at > self.stall_s


def wait_for_windows(read_records: Callable[[], list[dict[str, Any]]], experiments: list[str], *,
                     stall_s: float = WINDOWS_STALL_S, interval_s: float = 3.0) -> None:
    """Until every metric window of the experiments is closed in the totals ``read_records``
    returns, as long as the aggregator moves."""
    clock = StallClock(stall_s)
    while True:
        records = read_records()
        if {r["experiment"] for r in records} == set(experiments) and all(
                r["in_progress"] == 0 and r["n"] > 0 for r in records):
            return
        if clock.stalled(sorted((r["experiment"], r["variant"], r["metric"], r["n"], r["watermark_ts"])
                                for r in records)):
            for record in records:
                if record["in_progress"] or not record["n"]:
                    say(f"still open: {record['experiment']}/{record['variant']}/{record['metric']} "
                        f"n {record['n']}, in progress {record['in_progress']}")
            raise TimeoutError(f"every metric window closed: no metric record changed for {stall_s:.0f} s")
        time.sleep(interval_s)


def run(*, settings: Settings, options: DemoOptions) -> DemoResult:
    started = time.monotonic()
    specs = gated_specs(demo_specs())
    ids = [spec.id for spec in specs]
    shutil.rmtree(options.state_dir, ignore_errors=True)
    options.state_dir.mkdir(parents=True)
    with EmbeddedBroker(binary=settings.broker_binary, log_path=options.state_dir / "broker.log") as broker, \
            _third_party_to_file(options.state_dir / "logs" / "demo-libraries.log"):
        settings = settings.model_copy(
            update={"bootstrap_servers": broker.bootstrap, "state_dir": options.state_dir.resolve()}
        )
        say(f"embedded broker on {broker.bootstrap}; logs in {options.state_dir / 'logs'}")
        publish_experiments(settings, specs, who="demo")
        port, console_port, token = free_port(), free_port(), secrets.token_urlsafe(16)
        env = {**_worker_env(settings, broker.bootstrap), "TANDEM_CONSOLE_TOKEN": token}
        with Supervisor(state_dir=settings.state_dir, env=env) as supervisor:
            processes = _start_workers(supervisor, port, console_port, auto_stop=options.auto_stop,
                                       settings=settings)
            access = ConsoleAccess(f"http://127.0.0.1:{console_port}", token, f"http://127.0.0.1:{port}")
            driven = _drive(settings, options, supervisor, processes, serve_url=access.serve_url, specs=specs)
            say("waiting for the aggregator to close every metric window")
            wait_for_windows(lambda: _metric_records(settings, ids), ids)
            files = {spec.id: run_report(settings=settings, experiment=spec.id, out_dir=options.out_dir)
                     for spec in specs}
            live_metrics = _metric_records(settings, ids)
            interactions = interactions_from_topics(settings, specs)
            replayed = _replay(settings, ids) if options.replay_check else None
            consistency = _stream_equals_batch(settings, ids) if options.batch_check else {}
            console = _decide_and_restart(access, supervisor, processes["console"], specs,
                                          {k: f.report for k, f in files.items()}, driven.simulation.truths)
            if options.while_live is not None:
                options.while_live(access)
            pids = [broker.pid, *supervisor.started_pids]
        for spec in specs:
            write_truth(options.out_dir / f"{spec.id}-truth.json", driven.simulation.truths[spec.id])
        write_learning_curve_png(driven.simulation.learning_curve,
                                 options.out_dir / f"{specs[0].id}-learning-curve.png")
    primary = files[specs[0].id]
    return DemoResult(
        simulation=driven.simulation, report=primary.report, table=primary.table,
        reports={k: f.report for k, f in files.items()}, tables={k: f.table for k, f in files.items()},
        wall_s=time.monotonic() - started, probe=driven.probe,
        aggregator_killed_at=driven.killed[0] if driven.killed else None, live_metrics=live_metrics,
        console=console, replayed_metrics=replayed, pids=pids, interactions=interactions,
        consistency=consistency, specs=specs,
    )


#: Libraries whose log lines and warnings go to the demo's log file, not to its output.
LIBRARIES = ("kafka", "aiokafka", "faust", "mode", "feast", "urllib3", "matplotlib", "asyncio", "py.warnings")


@contextmanager
def _third_party_to_file(path: Path) -> Iterator[None]:
    """Route the libraries' log records (kafka-python's "Task ran for 0.1s ... blocking the event loop"
    among them) and Python warnings to ``path``: the demo's output is the demo's own lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in LIBRARIES:
        library = logging.getLogger(name)
        saved[name] = (library.propagate, library.level)
        library.addHandler(handler)
        library.propagate = False
        library.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        for name, (propagate, level) in saved.items():
            library = logging.getLogger(name)
            library.removeHandler(handler)
            library.propagate, library.level = propagate, level
        handler.close()


def _console_call(access: ConsoleAccess, method: str, path: str, body: dict[str, Any] | None = None,
                  ) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {access.token}"}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(access.url + path, data=data, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our loopback URL
        return dict(json.load(response))


def _console_ready(access: ConsoleAccess, experiment: str) -> bool:
    try:
        return bool(_console_call(access, "GET", f"/api/experiments/{experiment}")["id"] == experiment)
    except (OSError, ValueError, KeyError):
        return False


def _decide_and_restart(access: ConsoleAccess, supervisor: Supervisor, console: ProcessSpec,
                        specs: list[ExperimentSpec], reports: dict[str, dict[str, Any]],
                        truths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stop (unless the automatic stop did) every experiment and decide each A/B test through the
    console's API (a holdout is stopped, not decided), restart the console, and read the decisions
    back from it."""
    ids = [spec.id for spec in specs]
    wait_for(lambda: all(_console_ready(access, experiment) for experiment in ids), timeout_s=90,
             what="the console")
    records = {}
    for spec in specs:
        detail = _console_call(access, "GET", f"/api/experiments/{spec.id}")
        if detail["status"] == "running":
            _console_call(access, "POST", f"/api/experiments/{spec.id}/stop",
                          {"who": "demo", "why": "every metric window has closed"})
        else:
            say(f"the console had stopped {spec.id} by itself: {detail['history'][-1]['why']}")
        if spec.kind == "holdout":
            continue
        verdict = reports[spec.id]["decision"]["verdict"]
        records[spec.id] = _console_call(access, "POST", f"/api/experiments/{spec.id}/decide", {
            "who": "demo",
            "note": f"the report says {verdict}; the simulator's truth says {truths[spec.id]['decision']}"})
    supervisor.restart(console)
    wait_for(lambda: all(_console_ready(access, experiment) for experiment in ids), timeout_s=90,
             what="the restarted console")
    after = {}
    for experiment in ids:
        after[experiment] = _console_call(access, "GET", f"/api/experiments/{experiment}")
        if experiment not in records:
            continue
        decision = after[experiment].get("decision") or {}
        kept = decision.get("decision_id") == records[experiment]["decision"]["decision_id"]
        say(f"{experiment}: decision record {decision.get('decision_id')} ({decision.get('verdict')}) "
            f"{'read back' if kept else 'NOT found'} through the console's API after its restart")
    return after


def publish_experiments(settings: Settings, specs: list[ExperimentSpec], *, who: str) -> None:
    """Admit each spec next to the ones live (surfaces, layers, parameter owners), then publish it through
    the lifecycle (a new version, by ``who``, now); a decided experiment keeps its record as it is."""
    apply_topics(settings)
    surfaces = load_surfaces()
    live = read_specs(settings)
    for spec in specs:
        current = live.get(spec.id)
        if current is not None and current.status == "decided":
            continue
        admit(spec, live=[s for s in live.values() if s.status != "draft"], surfaces=surfaces)
        live[spec.id] = apply_spec(current, spec, who=who, at=int(time.time() * 1000))
        publish_spec(settings, live[spec.id])
    for spec in specs:
        layer = spec.layer.name if spec.layer else "none"
        variants = ", ".join(
            f"{v.name} sets {', '.join(f'{k}={_shown(val)}' for k, val in sorted(v.params.items())) or 'nothing'}"
            for v in spec.variants)
        say(f"experiment {spec.id} ({spec.kind}, surface {spec.surface}, layer {layer}): {variants}")


def _shown(value: Any) -> str:
    return value.policy if hasattr(value, "policy") else str(value)


def _worker_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """What the workers need to find this run's broker, state and topics."""
    return {
        "TANDEM_BOOTSTRAP_SERVERS": bootstrap,
        "TANDEM_STATE_DIR": str(settings.state_dir),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
    }


def _start_workers(supervisor: Supervisor, port: int, console_port: int, *, auto_stop: bool,
                   settings: Settings) -> dict[str, ProcessSpec]:
    specs = settings_worker_specs(settings, port, console_port, auto_stop=auto_stop)
    for process in specs.values():
        supervisor.start(process)
    say("started features worker, learner, serving API, experiment aggregator and console (5 processes)")
    serve_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _serving_ready(serve_url), timeout_s=90, what="the serving API's health")
    say(f"serving API ready on {serve_url}")
    say(f"console (live experiment pages and API): http://127.0.0.1:{console_port}/experiments")
    return specs


@dataclass
class _DrivenRun:
    simulation: SimulationResult
    probe: LatencyProbe
    killed: list[float]  # monotonic time of the aggregator's SIGKILL, if it was killed


def _drive(settings: Settings, options: DemoOptions, supervisor: Supervisor, processes: dict[str, ProcessSpec],
           *, serve_url: str, specs: list[ExperimentSpec]) -> _DrivenRun:
    """The simulated users against the live stack, with serving's latency probed throughout."""
    probe = LatencyProbe(serve_url)
    probe.start()
    killed: list[float] = []
    try:
        simulation = asyncio.run(
            _simulate(settings, serve_url, options, supervisor, processes["experiments"], killed, specs))
    finally:
        probe.stop()
    supervisor.check()
    say(
        f"simulated {simulation.users} users: {simulation.recommendations} recommendations, "
        f"{simulation.events_published} events, serving errors {sum(simulation.serving_errors.values())}"
    )
    return _DrivenRun(simulation, probe, killed)


def _metric_records(settings: Settings, experiments: list[str]) -> list[dict[str, Any]]:
    """Every experiment's totals: the newest partial of each partition, summed (docs/aggregation.md)."""
    from experiments.aggregation.stats import merge_partials

    records = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    return merge_partials([json.loads(r.value) for k, r in records.items()
                           if k and k.decode().split("/", 1)[0] in experiments and r.value is not None])


def _stream_equals_batch(settings: Settings, experiments: list[str]) -> dict[str, CheckResult]:
    """Archive the topics (the archiver in this process, to their end), then compare each experiment's
    stream figures with a recomputation from the archive (docs/batch.md)."""
    from experiments.batch import Archiver, check_experiment

    say("archiving the topics to Parquet and recomputing every metric in batch (DuckDB)")
    Archiver(settings=settings, flush_interval_s=5.0).run(idle_exit_s=3.0)
    return {experiment: check_experiment(settings=settings, experiment=experiment, engines=("duckdb",))
            for experiment in experiments}


def _replay(settings: Settings, experiments: list[str]) -> list[dict[str, Any]]:
    """The same topics aggregated again by an aggregator that was never disturbed (nothing published)."""
    from experiments.aggregation.aggregator import Aggregator, open_store

    replay = settings.model_copy(update={"state_dir": settings.state_dir / "replay"})
    say("replaying the same topics through an undisturbed aggregator, for comparison")
    Aggregator(settings=replay, group=f"{settings.topic_prefix}replay-check", publish=False).run(idle_exit_s=3.0)
    with open_store(replay) as store:
        return [record for experiment in experiments for record in store.metric_records(experiment)]


async def _simulate(
    settings: Settings,
    serve_url: str,
    options: DemoOptions,
    supervisor: Supervisor,
    aggregator: ProcessSpec,
    killed: list[float],
    specs: list[ExperimentSpec],
) -> SimulationResult:
    params = ModelParams(arrival_ms=options.arrival_days * DAY_MS)
    bar = _DayBar(params, enabled=options.progress_bar)

    def progress(message: str) -> None:
        bar.update(message)
        day = _simulated_day(message)
        if options.kill_aggregator_on_day is not None and not killed and day == options.kill_aggregator_on_day:
            killed.append(time.monotonic())
            supervisor.kill("experiments")
            bar.write("[demo] SIGKILLed the experiment aggregator mid-run; restarting it")
            supervisor.start(aggregator)

    try:
        return await run_simulation(
            settings=settings, serve_url=serve_url, users=options.users, seed=options.seed, progress=progress,
            params=params, min_step_wall_s=options.step_wall_s, before_experiment=lambda: _features_caught_up(settings),
            specs=specs,
        )
    finally:
        bar.close()


class _DayBar:
    """A progress bar over the simulated days (tqdm, on standard error); the day's summary as its postfix.
    Without a bar (or off a terminal's wish) every day's line is printed instead."""

    def __init__(self, params: ModelParams, *, enabled: bool) -> None:
        self.first_day = -7
        self.last_day = (params.horizon_ms() - 1 - ORIGIN_MS) // DAY_MS
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.last_day - self.first_day + 1, desc="[demo] simulated days", unit="day",
                             dynamic_ncols=True, leave=True)

    def update(self, message: str) -> None:
        day = _simulated_day(message)
        if self._bar is None or day is None:
            say(message)
            return
        self._bar.update(max(0, day - self.first_day + 1 - self._bar.n))
        self._bar.set_postfix_str(message.split(":", 1)[1].strip().split(",")[0] + f" (day {day:+d})")

    def write(self, message: str) -> None:
        if self._bar is None:
            print(message, flush=True)
        else:
            self._bar.write(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.total - self._bar.n)  # the last day has no summary line of its own
            self._bar.close()


async def wait_for_pre_period(
    read_statuses: Callable[[], tuple[dict[str, Any], dict[str, Any]]], *,
    stall_s: float = PRE_PERIOD_STALL_S, interval_s: float = 0.2,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> float:
    """Until the features worker has every pre-period event online (its status says no lag and
    nothing waiting) and the learner has read them all, as long as either moves; the seconds it
    took. ``read_statuses`` returns the features worker's status and the learner's. Day 0's first
    requests then read up-to-date features, and the learner is not days behind the first decisions."""
    began = time.monotonic()
    clock = StallClock(stall_s)
    while True:
        features, learner = read_statuses()
        if (features.get("processed", 0) > 0 and features.get("lag") == 0 and features.get("waiting") == 0
                and learner.get("lag") == 0):
            return time.monotonic() - began
        if clock.stalled((features.get("processed"), features.get("lag"), learner.get("read"), learner.get("lag"))):
            raise TimeoutError(
                f"before day 0: the features worker (lag {features.get('lag')}, waiting {features.get('waiting')}) "
                f"and the learner (lag {learner.get('lag')}) did not move for {stall_s:.0f} s"
            )
        await sleep(interval_s)


async def _features_caught_up(settings: Settings) -> None:
    from streams.worker.learner.app import learner_status_path
    from streams.worker.status import read_status, status_path

    def statuses() -> tuple[dict[str, Any], dict[str, Any]]:
        return read_status(status_path(settings)) or {}, read_status(learner_status_path(settings)) or {}

    took = await wait_for_pre_period(statuses)
    say(f"features worker and learner caught up with the pre-period after {took:.1f} s")


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
    axes.set_title("learning curve: play rate of each variant's policy")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def decisions_against_truth(result: DemoResult) -> list[dict[str, Any]]:
    """Per experiment and treatment variant: the report's decision, the truth's, whether the truth is
    decisive at this run's size and whether they match (``infra.demo.against_truth``)."""
    return against_truth(result.reports, result.simulation.truths)


def run_demo(*, settings: Settings, options: DemoOptions | None = None) -> int:
    options = options or DemoOptions()
    result = run(settings=settings, options=options)
    for experiment, table in result.tables.items():
        print(table, flush=True)
        truth = result.simulation.truths[experiment]
        say(f"ground truth of {experiment} (the simulator's model): decision {truth['decision']}")
        for name, metric in truth["metrics"].items():
            for variant, effect in metric["effects"].items():
                say(f"  {name} {variant}: true relative effect {effect['relative']:+.2%} ({effect['verdict']})")
    say("learning curve: play rate of recommendations by simulated day")
    curve = result.simulation.learning_curve
    for day in sorted({row["day"] for row in curve}):
        rates = "  ".join(f"{row['variant']} {row['play_rate']:.2f}" for row in curve if row["day"] == day)
        say(f"  day {day:+d}: {rates}")
    say(f"serving probe during the run: {json.dumps(result.probe.summary())}")
    rows = decisions_against_truth(result)
    for spec in result.specs:
        report = result.reports[spec.id]
        predictions = {(row.variant, row.metric): row for row in calibration_rows(spec, report)}
        for line in render_variants(report, result.simulation.truths[spec.id],
                                    [row for row in rows if row["experiment"] == spec.id], predictions):
            say(line)
    say("interactions between the concurrent experiments (Holm-corrected over every pair, arm and metric):")
    for interaction in result.interactions:
        say(f"  {interaction.describe()}")
    summary = options.out_dir / "demo-summary.json"
    summary.write_text(json.dumps({"experiments": rows, "interactions": [asdict(i) for i in result.interactions],
                                   "wall_s": round(result.wall_s, 1)}, indent=2) + "\n")
    for row in rows:
        say(describe_row(row))
    for experiment, check in result.consistency.items():
        for line in check.lines():
            say(f"{experiment}: {line}")
    say(f"wall time {result.wall_s:.0f} s; wrote {options.out_dir}/ (summary in {summary.name})")
    decided = all(row["matches"] for row in rows if row["decisive"])
    return 0 if decided and all(check.equal for check in result.consistency.values()) else 1


def postgres_data_dir(settings: Settings) -> Path:
    return settings.state_dir / "postgres"


def refuse_stale_state(settings: Settings) -> None:
    """Before any worker starts: ``StaleState`` if the aggregator's, the features worker's or the
    learner's stored state belongs to another broker log (a restarted embedded broker starts
    empty), so ``tandem up`` never continues state whose log no longer exists."""
    from experiments.aggregation.aggregator import check_log
    from streams.worker.features.commands import guard_features_state
    from streams.worker.learner.commands import guard_learner_state

    refusals = []
    for check in (check_log, guard_features_state, guard_learner_state):
        try:
            check(settings)
        except StaleState as exc:
            refusals.append(str(exc))
    if refusals:
        raise StaleState("\n".join(refusals))


def start_detached(*, settings: Settings, port: int, console_port: int = 8090, store: str = "sqlite") -> int:
    """``tandem up``: the same processes as the demo, left running; ``tandem down`` stops them.
    With ``store="postgres"`` the aggregator keeps its state in an embedded PostgreSQL server
    (``infra.postgres``) unless ``TANDEM_POSTGRES_DSN`` already names one."""
    from infra.kafka import broker

    if settings.embedded and not settings.bootstrap_servers:
        state = broker.daemon_up(state_file=settings.broker_state_file, binary=settings.broker_binary)
        settings = settings.model_copy(update={"bootstrap_servers": str(state["bootstrap"])})
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
            settings = settings.model_copy(update={"postgres_dsn": SecretStr(server.dsn)})
            print(f"postgres {server.dsn} (data in {server.data_dir})")
    apply_topics(settings)
    refuse_stale_state(settings)
    specs = demo_specs()
    publish_experiments(settings, specs, who="tandem up")
    supervisor = Supervisor(state_dir=settings.state_dir, env=children)
    for process in settings_worker_specs(settings, port, console_port).values():
        supervisor.start(process)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _serving_ready(url), timeout_s=90, what="the serving API's health")
    print(f"broker {settings.resolved_bootstrap()}; serving {url}; logs in {supervisor.log_dir}")
    print(f"console http://127.0.0.1:{console_port}/experiments (writes need TANDEM_CONSOLE_TOKEN)")
    print(f"try: tandem simulate --serve-url {url} --users 2000; tandem report {specs[0].id}; tandem down")
    return 0
