"""The live driver: the user model against the running stack (``tandem simulate``).

It talks to serving only over HTTP (``POST /recommend`` with the simulated event time
``ts`` and the model's genres as candidates) and to Kafka only through ``EventPublisher``
(listening events keyed by user). Event time is compressed: the run advances in steps
of ``step_ms`` (an hour) of event time; the sessions starting in a step run concurrently,
with at most ``concurrency`` requests in flight, and the step's events are then published
in event-time order (events a session produced past the step's end wait for their step),
so every partition stays in event-time order. Publishing runs in one background thread,
one step behind the requests.

A failed request (connection error, timeout, 5xx, after ``retries`` retries; or a 4xx; or
an answer without a valid arm) is counted by kind, and that recommendation is lost to the
user: nothing is played. The run never stops for it.

The timeline: days -7..0 are organic listening (the CUPED pre-period, and the features the
bandit starts from), first exposures are spread over day 0, and the run ends when every
exposed user's ``[7 d, 8 d)`` window is closed plus the aggregator's lateness and some
slack (``ModelParams.horizon_ms``), about day 9.1: users keep listening until then so every
partition's watermark passes the last window.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from experiments.spec import ExperimentSpec
from infra.kafka.topics import EVENTS
from infra.settings import Settings
from infra.simulation.model import DAY_MS, HOUR_MS, ORIGIN_MS, ModelParams, Served, User, make_users, session
from infra.simulation.offline import REWARD_WINDOW_MS, LearningCurve, credit_rewards, load_demo_specs
from infra.simulation.truth import compute_truth, write_truth
from streams.events import ListeningEvent

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, record: Any) -> None: ...
    def flush(self, timeout_s: float | None = None) -> None: ...
    def close(self, timeout_s: float | None = 30.0) -> None: ...


@dataclass
class SimulationResult:
    users: int
    seed: int
    sessions: int = 0
    recommendations: int = 0
    serving_errors: dict[str, int] = field(default_factory=dict)
    events_published: int = 0
    delivery_error: str | None = None
    exposed: dict[str, int] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)  # of the experiment the learning curve follows
    truths: dict[str, dict[str, Any]] = field(default_factory=dict)  # of every experiment simulated
    learning_curve: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    start_ms: int = 0
    end_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Client:
    """``POST /recommend`` with retries; failures are counted by kind, never raised."""

    def __init__(self, http: aiohttp.ClientSession, url: str, arms: list[str], *, concurrency: int,
                 retries: int, backoff_s: float) -> None:
        self.http, self.url, self.arms, self.retries = http, url.rstrip("/") + "/recommend", arms, retries
        self.backoff_s = backoff_s
        self.limit = asyncio.Semaphore(concurrency)
        self.errors: Counter[str] = Counter()
        self.ok = 0

    async def recommend(self, user_id: str, ts: int) -> dict[str, Any] | None:
        body = {"user_id": user_id, "candidates": self.arms, "ts": ts}
        for attempt in range(self.retries + 1):
            kind = await self._once(body)
            if isinstance(kind, dict):
                self.ok += 1
                return kind
            self.errors[kind] += 1
            if kind.startswith("http_4") or kind == "bad_answer":
                return None
            await asyncio.sleep(self.backoff_s * (attempt + 1))
        self.errors["gave_up"] += 1
        return None

    async def _once(self, body: dict[str, Any]) -> dict[str, Any] | str:
        async with self.limit:
            try:
                async with self.http.post(self.url, json=body) as response:
                    if response.status != 200:
                        await response.read()
                        return f"http_{response.status}"
                    answer = await response.json()
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                return type(exc).__name__
        if not isinstance(answer, dict) or answer.get("arm") not in self.arms:
            return "bad_answer"
        return answer


def _served(answer: dict[str, Any], user: User, at: int) -> Served:
    """The answer as the user model takes it; every experiment it exposes is remembered."""
    exposed = answer.get("exposed")
    if isinstance(exposed, dict):
        for experiment, variant in exposed.items():
            user.expose(str(experiment), str(variant), at)
    num_items = (answer.get("params") or {}).get("num_items")
    return Served(answer["arm"], num_items if isinstance(num_items, int) and num_items > 0 else None)


async def _run_session(
    client: _Client, spec: ExperimentSpec, params: ModelParams, user: User, ts: int, day: int,
    curve: LearningCurve,
) -> list[ListeningEvent]:
    """One session against serving; ``spec`` is the experiment whose variants the learning curve follows."""
    events: list[ListeningEvent] = []
    before = len(user.expected)
    served: list[tuple[int, str, str | None]] = []  # (ts, arm, variant of spec) of the answered recommendations
    run = session(params, user, ts, day, events)
    try:
        at = run.send(None)
        while True:
            answer = await client.recommend(user.user_id, at)
            shown = None
            if answer is not None:
                shown = _served(answer, user, at)
                served.append((at, shown.arm, (answer.get("exposed") or {}).get(spec.id)))
            at = run.send(shown)
    except StopIteration:
        pass
    if served:
        recs = [e for e in user.expected[before:] if e.arm is not None]
        rewards = credit_rewards([(t, a) for t, a, _ in served], events, REWARD_WINDOW_MS)
        for k, ((at, _, variant), rec) in enumerate(zip(served, recs, strict=False)):
            if variant is not None:
                curve.add(variant, at, rec.played, rewards[k])
    return events


def _publish(publisher: Publisher, events: list[ListeningEvent]) -> int:
    for event in events:
        publisher.publish(event)
    return len(events)


class _Outbox:
    """Publishes batches of events on one background thread, one batch behind the requests."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.published = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate-publish")
        self._loop = asyncio.get_running_loop()
        self._pending: asyncio.Future[int] | None = None

    async def drain(self) -> None:
        """Wait for the batch in flight."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.published += await pending

    async def send(self, events: list[ListeningEvent]) -> None:
        await self.drain()
        self._pending = self._loop.run_in_executor(self._executor, _publish, self.publisher, events)

    async def flush(self, timeout_s: float) -> None:
        """Every event handed over so far delivered (``DeliveryError`` otherwise)."""
        await self.drain()
        await self._loop.run_in_executor(self._executor, self.publisher.flush, timeout_s)

    async def close(self, *, close_publisher: bool) -> str | None:
        """Stop the thread (closing the publisher first if it is ours); the close error, if any."""
        error = None
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        if close_publisher:
            try:
                await self._loop.run_in_executor(self._executor, self.publisher.close, 30.0)
            except Exception as exc:  # noqa: BLE001 - reported in the result
                error = f"{type(exc).__name__}: {exc}"
        self._executor.shutdown(wait=False)
        return error


class _EventTimeBuffer:
    """Events held until the step that contains their event time, released in event-time order."""

    def __init__(self) -> None:
        self._held: list[tuple[int, int, ListeningEvent]] = []
        self._order = 0

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, events: list[ListeningEvent]) -> None:
        for event in events:
            self._order += 1
            heapq.heappush(self._held, (event.ts, self._order, event))

    def release(self, before_ts: int, *, everything: bool) -> list[ListeningEvent]:
        due = []
        while self._held and (self._held[0][0] < before_ts or everything):
            due.append(heapq.heappop(self._held)[2])
        return due


@dataclass
class _Run:
    """One simulation's moving parts, advanced step by step by ``run_simulation``."""

    client: _Client
    spec: ExperimentSpec
    params: ModelParams
    people: list[User]
    agenda: list[tuple[int, int, int]]  # (session start, user index, day), in time order
    outbox: _Outbox
    result: SimulationResult
    curve: LearningCurve = field(default_factory=LearningCurve)
    buffer: _EventTimeBuffer = field(default_factory=_EventTimeBuffer)
    next_session: int = 0

    async def step(self, step_end: int) -> None:
        """Run the sessions that start before ``step_end``, then hand the events due to the outbox."""
        batch = []
        while self.next_session < len(self.agenda) and self.agenda[self.next_session][0] < step_end:
            ts, index, day = self.agenda[self.next_session]
            batch.append(_run_session(self.client, self.spec, self.params, self.people[index], ts, day, self.curve))
            self.next_session += 1
        for events in await asyncio.gather(*batch):
            self.result.sessions += bool(events)
            self.buffer.hold(events)
        await self.outbox.send(self.buffer.release(step_end, everything=step_end >= self.result.end_ms))

    def day_summary(self, step_end: int, began: float) -> str:
        return (f"day {(step_end - ORIGIN_MS) // DAY_MS - 1:+d}: {self.result.sessions} sessions, "
                f"{self.client.ok} recommendations, {sum(self.client.errors.values())} serving errors, "
                f"{self.outbox.published} events published, {time.perf_counter() - began:.1f} s")


async def _advance(
    run: _Run, *, step_ms: int, min_step_wall_s: float, say: Callable[[str], None], began: float,
    before_experiment: Callable[[], Awaitable[None]] | None,
) -> None:
    """Step through event time until the horizon and every held event are published."""
    horizon = run.result.end_ms
    step = run.result.start_ms - run.result.start_ms % step_ms
    while step < horizon or run.buffer:
        if before_experiment is not None and step >= ORIGIN_MS:
            await run.outbox.flush(60.0)
            await before_experiment()
            before_experiment = None
        step_end = step + step_ms
        step_began = time.perf_counter()
        await run.step(step_end)
        if (step_end - ORIGIN_MS) % DAY_MS == 0:
            say(run.day_summary(step_end, began))
        step = step_end
        rest = min_step_wall_s - (time.perf_counter() - step_began)
        if rest > 0 and step >= ORIGIN_MS:  # the pre-period has nothing to learn: full speed
            await asyncio.sleep(rest)
    await run.outbox.drain()


def _default_publisher(settings: Settings) -> Publisher:
    from infra.kafka.config import producer_config
    from streams.producer import EventPublisher

    return EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS))


async def run_simulation(
    *,
    settings: Settings,
    serve_url: str,
    users: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
    params: ModelParams = ModelParams(),  # noqa: B008 - frozen
    spec: ExperimentSpec | None = None,
    specs: Sequence[ExperimentSpec] | None = None,
    publisher: Publisher | None = None,
    concurrency: int = 32,
    retries: int = 2,
    backoff_s: float = 0.05,
    timeout_s: float = 5.0,
    step_ms: int = HOUR_MS,
    min_step_wall_s: float = 0.0,
    before_experiment: Callable[[], Awaitable[None]] | None = None,
) -> SimulationResult:
    """Drive ``users`` simulated users against serving and the broker; see the module docstring.

    ``specs`` are the experiments whose truth is computed (default: the demo's); ``spec``, the one
    the learning curve follows (default: the first of them).
    ``publisher`` defaults to an ``EventPublisher`` on ``settings``' events topic (closed at
    the end); ``min_step_wall_s`` slows the clock down when the workers must keep up.
    ``before_experiment`` is awaited once the pre-period's events are all delivered, before
    day 0 (e.g. until the features worker has caught up with them).
    """
    began = time.perf_counter()
    specs = list(specs) if specs is not None else ([spec] if spec is not None else load_demo_specs())
    spec = spec or specs[0]
    people = make_users(params, users=users, seed=seed)
    agenda = sorted((ts, u.index, day) for u in people for ts, day in u.slot_times(params))
    result = SimulationResult(users=users, seed=seed, start_ms=agenda[0][0] if agenda else ORIGIN_MS,
                              end_ms=params.horizon_ms())
    outbox = _Outbox(publisher or _default_publisher(settings))
    curve = LearningCurve()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                         connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            client = _Client(http, serve_url, list(params.genres), concurrency=concurrency, retries=retries,
                             backoff_s=backoff_s)
            run = _Run(client, spec, params, people, agenda, outbox, result, curve)
            await _advance(run, step_ms=step_ms, min_step_wall_s=min_step_wall_s, began=began,
                           say=progress or (lambda _message: None), before_experiment=before_experiment)
            result.recommendations = client.ok
            result.serving_errors = dict(client.errors)
        try:
            await outbox.flush(60.0)
        except Exception as exc:  # noqa: BLE001 - reported in the result, the truth is still written
            result.delivery_error = f"{type(exc).__name__}: {exc}"
            logger.error("events not all delivered: %s", exc)
    finally:
        close_error = await outbox.close(close_publisher=publisher is None)
        result.delivery_error = result.delivery_error or close_error
        result.events_published = outbox.published
    result.truths = {s.id: compute_truth(people, s) for s in specs}
    result.truth = result.truths.get(spec.id) or compute_truth(people, spec)
    result.exposed = dict(result.truth["units"])
    result.learning_curve = curve.rows()
    result.wall_s = round(time.perf_counter() - began, 3)
    return result


def simulate(settings: Settings, *, serve_url: str, users: int, seed: int, truth_path: str | Path | None = None) -> int:
    """Run the simulation, print progress and a summary, write the truth; 0 unless nothing was exposed
    or events were not delivered."""
    from infra.simulation.power import pilot_baselines, power_warning

    specs = load_demo_specs()
    held_out = sum(v.weight for s in specs if s.kind == "holdout" for v in s.variants if v.name == s.control)
    for spec in specs:
        if spec.kind == "holdout":
            continue  # reported, not decided
        warning = power_warning(spec, users=users, baselines=pilot_baselines(spec, seed=seed + 1), held_out=held_out)
        if warning:
            print(f"{spec.id}: {warning}", flush=True)
    result = asyncio.run(run_simulation(settings=settings, serve_url=serve_url, users=users, seed=seed,
                                        progress=lambda message: print(message, flush=True)))
    path = write_truth(truth_path or Path(settings.state_dir) / "simulation" / f"truth-seed{seed}.json",
                       {**result.truth, "experiments": result.truths,
                        "run": {k: v for k, v in result.to_dict().items() if k not in ("truth", "truths")}})
    print(f"{result.users} users, {result.sessions} sessions, {result.recommendations} recommendations "
          f"({sum(result.serving_errors.values())} serving errors {result.serving_errors}), "
          f"{result.events_published} events, exposed {result.exposed}, {result.wall_s:.1f} s; truth in {path}")
    for truth in result.truths.values():
        print(f"  experiment {truth['experiment']} ({truth['kind']}), units {truth['units']}:")
        for name, metric in truth["metrics"].items():
            for variant, effect in metric["effects"].items():
                print(f"    true {name}: {variant} {effect['relative']:+.2%} ({effect['verdict']})")
        print(f"    true decision: {truth['decision']}")
    if result.delivery_error:
        print(f"events not all delivered: {result.delivery_error}")
        return 1
    return 0 if sum(result.exposed.values()) else 1
