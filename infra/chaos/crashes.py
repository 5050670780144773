"""Scenario 1, crashes: seeded SIGKILLs of each worker in turn, each restarted by the harness.

Each worker gets topics and a state directory of its own on one embedded broker. Its input log is
published in waves, one before each (re)start, so a kill always finds work in flight; the harness
waits until the worker has made progress on the new wave, then SIGKILLs it after a seeded random
delay. After the last kill the worker runs to the end of its input, and its output is compared
with an oracle computed from the topics (``infra.chaos.oracles``):

- the aggregator: the experiment's sufficient statistics exactly equal to the aggregation core's;
- the archiver: every valid record archived once (none missing, none twice);
- the features worker: the online store holds the oracle's last value per user and feature;
- the learner: its checkpointed state equals an uninterrupted learner's (every reward applied
  exactly once), and the updates count is the oracle's;
- serving and the console: SIGKILLed while answering, restarted, answering again; serving's
  answered decisions are counted against the decisions topic (lost, twice).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.lifecycle import apply_spec, publish_spec
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec
from experiments.synthetic import synthetic_log
from infra.chaos import oracles
from infra.chaos.stack import ChaosStack, chaos_stack, http_json, wait_until
from infra.kafka.broker import free_port
from infra.kafka.config import producer_config
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EVENTS, EXPOSURES, apply_topics
from infra.settings import Settings
from streams.events import Decision, EventType, Exposure, ListeningEvent, decode, encode
from streams.producer import EventPublisher

logger = logging.getLogger(__name__)

SCENARIO = "crashes"
KILLS = {True: 2, False: 20}
#: Requests serving answers after a restart before its next kill (but in a round killed while starting).
ANSWERS_BEFORE_KILL = 50
#: Users and days of the synthetic log per worker: long enough that every wave is work in flight.
LOG_SIZE = {True: (120, 16), False: (400, 21)}
T0_MS = 1_767_225_600_000
ARMS = ["jazz", "rock", "pop", "folk"]

Record = tuple[str, bytes, bytes]  # (topic role, key, value)


def experiment_log(spec: ExperimentSpec, *, users: int, days: int, seed: int) -> list[Record]:
    """Exposures and events of ``spec``'s experiment, in event-time order (nothing late)."""
    log = synthetic_log(spec, users=users, days=days, seed=seed)
    records = [(x.ts, "exposures", x.user_id.encode(), encode(x)) for x in log.exposures]
    records += [(e.ts, "events", e.user_id.encode(), encode(e)) for e in log.events]
    return [(role, key, value) for _, role, key, value in sorted(records, key=lambda r: r[0])]


def learner_log(*, decisions: int, users: int, seed: int) -> list[Record]:
    """Decisions every 20 s of event time and the plays and skips that follow some of them (rewards)."""
    rng = random.Random(seed)
    records: list[tuple[int, str, bytes, bytes]] = []
    for number in range(decisions):
        user = f"user-{rng.randrange(users):03d}"
        ts = T0_MS + number * 20_000
        arm = rng.choice(ARMS)
        x = round(rng.uniform(-1, 1), 3)
        decision = Decision(decision_id=f"d-{number}", user_id=user, ts=ts,
                            policy=("linucb", "epsilon_greedy")[number % 2], policy_version=0, arm=arm,
                            propensity=0.25, arms=ARMS, context={"x": x, "bias": 1.0})
        records.append((ts, "decisions", user.encode(), encode(decision)))
        for extra in range(rng.randrange(3)):
            played = rng.random() < (0.7 if (arm == "jazz") == (x > 0) else 0.3)
            event = ListeningEvent(event_id=f"e-{number}-{extra}", user_id=user, ts=ts + rng.randrange(1, 40) * 60_000,
                                   type=EventType.PLAY if played else EventType.SKIP, item_id=f"{arm}-1", genre=arm,
                                   ms_played=rng.randrange(1_000, 200_000))
            records.append((event.ts, "events", user.encode(), encode(event)))
    return [(role, key, value) for _, role, key, value in sorted(records, key=lambda r: r[0])]


def publish(settings: Settings, records: list[Record]) -> None:
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        for role, key, value in records:
            publisher.publish_bytes(key, value, topic=settings.topic(role))


def waves(records: list[Record], count: int) -> list[list[Record]]:
    size = len(records) // count + 1
    return [records[i:i + size] for i in range(0, len(records), size)]


class Stopwatch:
    """Wall seconds spent per step, summed over the step's repetitions (where a scenario's time goes)."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self._seconds[step] = self._seconds.get(step, 0.0) + time.monotonic() - began

    def totals(self) -> dict[str, float]:
        return {step: round(seconds, 1) for step, seconds in self._seconds.items()}


@dataclass(frozen=True)
class StatefulWorker:
    """A worker that changes state: how to start it, how far it got, how to finish, what to check."""

    name: str
    argv: tuple[str, ...]
    log: Callable[[ExperimentSpec, int, bool], list[Record]]
    progress: Callable[[ChaosStack, int], int]  # (stack, pid) -> a count that grows as it works
    #: The count is kept across restarts (stored offsets, files): a new run has worked once it grew.
    #: Otherwise it is the running process's own (its status file), -1 before its first status.
    cumulative: bool
    finish: Callable[[ChaosStack], None]  # run it to the end of its input (and stop it)
    check: Callable[[ChaosStack, ExperimentSpec], dict[str, Any]]  # figures with "exact": bool


def _experiment_records(spec: ExperimentSpec, seed: int, quick: bool) -> list[Record]:
    users, days = LOG_SIZE[quick]
    return experiment_log(spec, users=users, days=days, seed=seed)


def _archive_records(spec: ExperimentSpec, seed: int, quick: bool) -> list[Record]:
    learning = learner_log(decisions=LOG_SIZE[quick][0] * 5, users=LOG_SIZE[quick][0], seed=seed)
    return _experiment_records(spec, seed, quick) + [r for r in learning if r[0] == "decisions"]


def _learner_records(spec: ExperimentSpec, seed: int, quick: bool) -> list[Record]:
    return learner_log(decisions=LOG_SIZE[quick][0] * 15, users=60, seed=seed)


# The aggregator.


def _aggregator_finish(stack: ChaosStack) -> None:
    stack.start("aggregator", "experiments", "aggregate", "--allowed-lateness", "30m", "--idle-exit", "6")
    code = stack.wait_exit("aggregator", timeout_s=900)
    if code != 0:
        raise RuntimeError(f"the aggregator's last run exited {code}: {stack.log_tail('aggregator')}")


def _aggregator_check(stack: ChaosStack, spec: ExperimentSpec) -> dict[str, Any]:
    expected, _ = oracles.aggregation_oracle(stack.settings, spec.id)
    found = oracles.differences(oracles.published_metrics(stack.settings, spec.id), expected)
    first = [r for r in expected.values() if r["metric"] == spec.metrics[0].name]
    return {"metric_records": len(expected), "exposed_users": sum(r["exposed"] for r in first),
            "closed_windows": sum(r["n"] for r in first), "in_progress": sum(r["in_progress"] for r in first),
            "differences": len(found), "examples": found[:5], "exact": not found and bool(expected)}


# The archiver.


def _archiver_finish(stack: ChaosStack) -> None:
    stack.start("archiver", "archive", "run", "--flush-interval", "0.3", "--max-records", "400", "--idle-exit", "4")
    code = stack.wait_exit("archiver", timeout_s=600)
    if code != 0:
        raise RuntimeError(f"the archiver's last run exited {code}: {stack.log_tail('archiver')}")


def _archiver_check(stack: ChaosStack, spec: ExperimentSpec) -> dict[str, Any]:
    figures = oracles.archive_check(stack.settings)
    lost = sum(f["missing"] for f in figures.values())
    twice = sum(f["twice"] for f in figures.values())
    clean = all(f["unknown"] == 0 and f["on_topic"] > 0 for f in figures.values())
    return {**figures, "lost": lost, "twice": twice, "exact": lost == 0 and twice == 0 and clean}


# The features worker and the learner (Faust), which run until stopped.


def _status(stack: ChaosStack, path: Path, pid: int) -> dict[str, Any] | None:
    from streams.worker.status import read_status

    status = read_status(path)
    return status if status is not None and status.get("pid") == pid else None


def _features_progress(stack: ChaosStack, pid: int) -> int:
    from streams.worker.status import status_path

    status = _status(stack, status_path(stack.settings), pid)
    return int(status["processed"]) if status else -1


def _features_finish(stack: ChaosStack) -> None:
    from streams.worker.status import status_path

    pid = stack.start("features", "features", "run")

    def caught_up() -> bool:
        status = _status(stack, status_path(stack.settings), pid)
        return bool(status and status["lag"] == 0 and status["waiting"] == 0 and status["assigned_partitions"])

    wait_until(caught_up, timeout_s=600, what="the features worker's last run to catch up",
               alive=stack.supervisor.check, interval_s=0.2)
    stack.supervisor.stop_all()


def _features_check(stack: ChaosStack, spec: ExperimentSpec) -> dict[str, Any]:
    expected = oracles.features_oracle(stack.settings)
    actual = oracles.online_features(stack.settings, sorted(expected))
    found = oracles.differences(actual, expected)
    return {"users": len(expected), "values": sum(len(f) for f in expected.values()), "differences": len(found),
            "examples": found[:5], "exact": not found and bool(expected)}


def _learner_progress(stack: ChaosStack, pid: int) -> int:
    from streams.worker.learner.app import learner_status_path

    status = _status(stack, learner_status_path(stack.settings), pid)
    return sum(status["read"].values()) if status else -1


def _newest_checkpoint(settings: Settings) -> Any:
    from streams.worker.app import app_id
    from streams.worker.learner.agent import newest_checkpoint
    from streams.worker.learner.app import LEARNER_APP_NAME

    return newest_checkpoint(settings, app_id(settings, LEARNER_APP_NAME))


def _learner_finish(stack: ChaosStack) -> None:
    _, ends = oracles.learner_oracle(stack.settings)
    stack.start("learner", "learner", "run")

    def covers_everything() -> bool:
        checkpoint = _newest_checkpoint(stack.settings)
        return checkpoint is not None and {(p.topic, p.partition): p.offset
                                           for p in checkpoint.head.positions} == ends

    wait_until(covers_everything, timeout_s=600, what="the learner's checkpoint to cover its whole input",
               alive=stack.supervisor.check, interval_s=0.5)
    stack.supervisor.stop_all()


def _learner_check(stack: ChaosStack, spec: ExperimentSpec) -> dict[str, Any]:
    expected, _ = oracles.learner_oracle(stack.settings)
    checkpoint = _newest_checkpoint(stack.settings)
    state = checkpoint.state()
    same = oracles.comparable_learner_state(state) == oracles.comparable_learner_state(expected.learner.to_state())
    return {"updates": state["updates"], "oracle_updates": expected.learner.updates,
            "checkpoints": checkpoint.head.seq + 1, "state_equals_oracle": same,
            "exact": same and state["updates"] == expected.learner.updates and expected.learner.updates > 0}


WORKERS = (
    StatefulWorker("aggregator", ("experiments", "aggregate", "--allowed-lateness", "30m"), _experiment_records,
                   lambda stack, pid: oracles.aggregator_applied(stack.settings), True, _aggregator_finish,
                   _aggregator_check),
    StatefulWorker("archiver", ("archive", "run", "--flush-interval", "0.3", "--max-records", "400"),
                   _archive_records, lambda stack, pid: oracles.archived_files(stack.settings), True, _archiver_finish,
                   _archiver_check),
    StatefulWorker("features", ("features", "run"), _experiment_records, _features_progress, False,
                   _features_finish, _features_check),
    StatefulWorker("learner", ("learner", "run"), _learner_records, _learner_progress, False, _learner_finish,
                   _learner_check),
)


def crash_worker(stack: ChaosStack, worker: StatefulWorker, spec: ExperimentSpec, *, kills: int, seed: int,
                 quick: bool) -> dict[str, Any]:
    """Publish the worker's log in ``kills + 1`` waves, SIGKILL it ``kills`` times, finish, check.

    Most kills come mid-work: after the new run made progress, plus a seeded delay of up to 1 s.
    A seeded quarter of them (never the first; 5 of 20, 1 of 2) come while the worker starts: at a seeded moment
    of the time its previous run took to make progress (imports, the incarnation check, the group
    join, the tables' recovery), before it read anything of its wave."""
    rng = random.Random(f"{seed}-{worker.name}")
    parts = waves(worker.log(spec, seed, quick), kills + 1)
    while_starting = set(rng.sample(range(1, kills), (kills + 2) // 4)) if kills > 1 else set()
    killed_after_progress = killed_starting = 0
    startup_s = 0.0
    clock = Stopwatch()
    for number, wave in enumerate(parts[:kills]):
        with clock("publish"):
            publish(stack.settings, wave)
        before = worker.progress(stack, -1) if worker.cumulative else 0
        if number in while_starting:
            with clock("start_and_kill_while_starting"):
                stack.start(worker.name, *worker.argv)
                time.sleep(rng.uniform(0.0, 1.0) * startup_s)
                stack.sigkill(worker.name)
            killed_starting += 1
            continue
        began = time.monotonic()
        with clock("start_to_progress"):
            pid = stack.start(worker.name, *worker.argv)
            try:
                wait_until(lambda: worker.progress(stack, pid) > before, timeout_s=120,  # noqa: B023
                           what=f"{worker.name} to make progress", alive=stack.supervisor.check, interval_s=0.05)
                killed_after_progress += 1
            except TimeoutError:
                logger.warning("%s made no progress within 120 s; killed anyway", worker.name)
        startup_s = time.monotonic() - began
        with clock("delay_and_kill"):
            time.sleep(rng.uniform(0.0, 1.0))
            stack.sigkill(worker.name)
    with clock("publish"):
        for wave in parts[kills:]:
            publish(stack.settings, wave)
    with clock("finish"):
        worker.finish(stack)
    with clock("check"):
        checked = worker.check(stack, spec)
    return {"kills": kills, "killed_mid_work": killed_after_progress, "killed_while_starting": killed_starting,
            "records_published": sum(len(w) for w in parts), **checked, "seconds": clock.totals()}


def _serving_and_console(stack: ChaosStack, spec: ExperimentSpec, *, kills: int, seed: int) -> dict[str, Any]:
    """SIGKILL serving and the console ``kills`` times each while a client asks; count the answered
    decisions and exposures that did not reach their topics. Serving spools each record before it
    answers and sends the spool again after a restart, so none may be missing; one may be on its
    topic twice (delivered, then sent again from the spool), which the consumers dedupe by id."""
    rng = random.Random(f"{seed}-serving")
    serve_port, console_port = free_port(), free_port()
    serve_url, console_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{console_port}"
    answered: list[str] = []
    exposed: list[str] = []  # the exposure ids the answers announce
    refused = Counter[str]()
    stop = threading.Event()

    def client() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            body = json.dumps({"user_id": f"user-{number % 500:05d}", "ts": spec.start + 86_400_000}).encode()
            request = urllib.request.Request(f"{serve_url}/recommend", data=body,  # noqa: S310 - our loopback URL
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our loopback URL
                    answer = json.load(response)
                answered.append(answer["decision_id"])
                exposed.extend(f"{answer['decision_id']}:{experiment}" for experiment in answer["exposed"])
            except urllib.error.HTTPError as exc:
                refused[str(exc.code)] += 1
            except OSError:
                refused["connection"] += 1  # down between a kill and its restart
                time.sleep(0.05)

    def healthy(url: str) -> Callable[[], bool]:
        return lambda: http_json(url) is not None

    stack.start("serving", "serve", "--port", str(serve_port))
    stack.start("console", "console", "--port", str(console_port), "--no-monitor")
    wait_until(healthy(f"{serve_url}/health"), timeout_s=120, what="serving", alive=stack.supervisor.check)
    wait_until(healthy(f"{console_url}/api/experiments"), timeout_s=120, what="the console",
               alive=stack.supervisor.check)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    restarts = Counter[str]()
    clock = Stopwatch()
    try:
        # Each round kills serving, then the console, at seeded moments; the console's kill does not
        # wait for serving to answer again (they share nothing), and the next round waits for both.
        # A seeded quarter of the rounds (never the first) kill them while they still start instead:
        # at a seeded moment of the time the last restart took to answer (serving may be sending its
        # spool again then).
        processes = (("serving", ("serve", "--port", str(serve_port)), f"{serve_url}/health"),
                     ("console", ("console", "--port", str(console_port), "--no-monitor"),
                      f"{console_url}/api/experiments"))
        while_starting = set(rng.sample(range(1, kills), (kills + 2) // 4)) if kills > 1 else set()
        startup_s = 0.0
        for number in range(kills):
            for name, argv, _url in processes:
                with clock("delay"):
                    time.sleep(rng.uniform(0.2, 1.5))
                stack.sigkill(name)
                stack.start(name, *argv)
                restarts[name] += 1
            if number + 1 in while_starting:
                with clock("delay_while_starting"):
                    time.sleep(rng.uniform(0.0, 1.0) * startup_s)
                continue
            began = time.monotonic()
            with clock("kills_to_both_answering"):
                for name, _argv, url in processes:
                    wait_until(healthy(url), timeout_s=120, what=f"{name} after its restart",
                               alive=stack.supervisor.check)
            startup_s = time.monotonic() - began
            # The next kill finds serving at work: it answered some requests of this life first.
            with clock("answering"):
                so_far = len(answered)
                try:
                    wait_until(lambda: len(answered) >= so_far + ANSWERS_BEFORE_KILL,  # noqa: B023
                               timeout_s=60, what="serving to answer", alive=stack.supervisor.check)
                except TimeoutError:
                    logger.warning("serving answered fewer than %d requests within 60 s", ANSWERS_BEFORE_KILL)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(timeout=30)
    stack.supervisor.stop_all()  # SIGTERM: serving flushes its log on a clean stop
    on_topic = Counter(decode(r.value, Decision).decision_id for r in read_topic(stack.settings,
                                                                                stack.settings.topic(DECISIONS)))
    exposures_on_topic = Counter(decode(r.value, Exposure).exposure_id
                                 for r in read_topic(stack.settings, stack.settings.topic(EXPOSURES)))
    lost = [d for d in answered if d not in on_topic]
    lost_exposures = [x for x in exposed if x not in exposures_on_topic]
    return {"restarts": dict(restarts), "rounds_killed_while_starting": len(while_starting),
            "answered": len(answered), "refused_while_down": dict(refused),
            "answered_not_on_topic": len(lost), "exposures_answered": len(exposed),
            "exposures_answered_not_on_topic": len(lost_exposures),
            # sent again from the spool after a kill: counted once by the consumers' dedupe on the id
            "on_topic_twice": sum(1 for c in on_topic.values() if c > 1),
            "exposures_on_topic_twice": sum(1 for c in exposures_on_topic.values() if c > 1),
            "exact": not lost and not lost_exposures and bool(answered), "seconds": clock.totals()}


def _crash_stateful(work_dir: Path, worker: StatefulWorker, spec: ExperimentSpec, *, kills: int, seed: int,
                    quick: bool) -> dict[str, Any]:
    with chaos_stack(work_dir / worker.name, prefix=f"crash-{worker.name}.") as stack:
        publish_spec(stack.settings, apply_spec(None, spec, who="chaos", at=T0_MS))
        return crash_worker(stack, worker, spec, kills=kills, seed=seed, quick=quick)


def _crash_serving(work_dir: Path, spec: ExperimentSpec, *, kills: int, seed: int) -> dict[str, Any]:
    with chaos_stack(work_dir / "serving", prefix="crash-serving.") as stack:
        publish_spec(stack.settings, apply_spec(None, spec, who="chaos", at=T0_MS))
        apply_topics(stack.settings)
        return _serving_and_console(stack, spec, kills=kills, seed=seed)


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    """Every worker's kill schedule at once, each on a broker, topics and state of its own (they share
    nothing but the host's CPU), so one worker's restart waits overlap another's work. Each worker's
    own kills, waves and oracle are as when they ran one after another; its figures say how long
    its run took (``wall_s``) and where its time went (``seconds``)."""
    kills = KILLS[quick]
    spec = load_spec(DEMO_SPEC_PATH)
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        worker.name: functools.partial(_crash_stateful, work_dir, worker, spec, kills=kills, seed=seed, quick=quick)
        for worker in WORKERS
    }
    jobs["serving_and_console"] = functools.partial(_crash_serving, work_dir, spec, kills=kills, seed=seed)

    def timed(name: str) -> dict[str, Any]:
        began = time.monotonic()
        try:
            result = jobs[name]()
        except Exception as exc:  # noqa: BLE001 - the other workers' figures are kept
            logger.exception("crashes: %s failed", name)
            result = {"error": f"{type(exc).__name__}: {exc}", "exact": False}
        logger.info("crashes: %s %s", name, result)
        return {**result, "wall_s": round(time.monotonic() - began, 1)}

    with ThreadPoolExecutor(len(jobs), thread_name_prefix="crash") as pool:
        running = {name: pool.submit(timed, name) for name in jobs}  # started in the order of WORKERS
        figures: dict[str, Any] = {name: future.result() for name, future in running.items()}
    ok = all(part["exact"] for part in figures.values())
    names = ", ".join(figures)
    return {"scenario": SCENARIO, "ok": ok, "figures": figures,
            "done": f"{kills} seeded SIGKILLs of each of {names} (their schedules side by side, each worker on "
                    "a broker of its own), each restarted by the harness, and their outputs compared with "
                    "oracles from the topics"}
