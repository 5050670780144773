"""A restarted embedded broker (an empty log at the same address): every stateful consumer refuses the
state it built from the lost log, naming it, and keeps it; serving's buffer reaches the new log.

Each test runs its own broker and restarts it on the same port (the session broker stays up).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from experiments.aggregation.aggregator import Aggregator, database_path
from experiments.batch.archive import Archive
from experiments.batch.archiver import Archiver
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_to_json
from infra.demo.run import refuse_stale_state
from infra.errors import StaleState
from infra.kafka.broker import EmbeddedBroker, free_port
from infra.kafka.config import producer_config
from infra.kafka.incarnation import current_incarnation
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DECISIONS, EVENTS, EXPERIMENTS, apply_topics
from infra.settings import Settings, load_settings
from streams.events import encode
from streams.producer import EventPublisher
from streams.serving import ServingConfig, build_app, build_service
from streams.worker.features.commands import guard_features_state
from streams.worker.learner.commands import guard_learner_state
from tests.helpers import DefaultFeatures, make_event


class RestartableBroker:
    """An embedded broker that can be stopped and started again on the same port (empty log)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "broker.log"
        self._broker: EmbeddedBroker | None = None

    def start(self) -> None:
        self._broker = EmbeddedBroker(port=self.port, log_path=self.log).start()

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartableBroker]:
    broker = RestartableBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_settings(restartable: RestartableBroker, tmp_path: Path) -> Settings:
    settings = load_settings({}, bootstrap_servers=f"127.0.0.1:{restartable.port}", topic_prefix="r.",
                             state_dir=tmp_path / "state")
    apply_topics(settings)
    return settings


def publish_spec_and_events(settings: Settings, events: int) -> None:
    spec = load_spec(DEMO_SPEC_PATH)
    with EventPublisher(config=producer_config(settings), topic=settings.topic(EVENTS)) as publisher:
        publisher.publish_bytes(spec.id.encode(), spec_to_json(spec), topic=settings.topic(EXPERIMENTS))
        for number in range(events):
            event = make_event(number)
            publisher.publish_bytes(event.user_id.encode(), encode(event))


def stored_offsets(database: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(database) as connection:
        return sorted(connection.execute("SELECT topic, partition_id, next_offset FROM agg_offsets").fetchall())


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_aggregator_refuses_its_state_after_a_broker_restart_and_keeps_it(
    store: str, own_settings: Settings, restartable: RestartableBroker, request: pytest.FixtureRequest
) -> None:
    settings = own_settings
    if store == "postgres":
        dsn: str = request.getfixturevalue("new_postgres_database")()
        settings = settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
    publish_spec_and_events(settings, 60)
    first = Aggregator(settings=settings).run(idle_exit_s=1.0)
    assert first.applied > 0
    before = stored_offsets(database_path(settings)) if store == "sqlite" else None

    restartable.restart()
    apply_topics(settings)
    publish_spec_and_events(settings, 200)  # the new log grows past the old offsets: only the marker tells
    with pytest.raises(StaleState) as refused:
        Aggregator(settings=settings).run(idle_exit_s=1.0)
    message = str(refused.value)
    assert "the aggregator" in message and "r.events[" in message and "up to offset" in message
    assert "state is kept" in message and ("experiments.db" in message or "PostgreSQL" in message)
    assert dsn not in message if store == "postgres" else True  # the DSN may hold a password
    if before is not None:
        assert stored_offsets(database_path(settings)) == before


def test_state_without_a_marker_is_refused_when_the_log_is_shorter_than_its_offsets(
    own_settings: Settings, restartable: RestartableBroker
) -> None:
    publish_spec_and_events(own_settings, 60)
    Aggregator(settings=own_settings).run(idle_exit_s=1.0)
    with sqlite3.connect(database_path(own_settings)) as connection:  # state from before markers existed
        connection.execute("DELETE FROM agg_meta")
    restartable.restart()
    apply_topics(own_settings)
    with pytest.raises(StaleState, match=r"the log is shorter .*r\.(events|experiments)\[\d\] stored offset \d+, "
                                         r"the log ends at 0"):
        Aggregator(settings=own_settings).run(idle_exit_s=1.0)


def test_the_archiver_refuses_an_archive_of_another_log(own_settings: Settings, restartable: RestartableBroker,
                                                        tmp_path: Path) -> None:
    publish_spec_and_events(own_settings, 40)
    url = str(tmp_path / "archive")
    assert Archiver(settings=own_settings, archive_url=url, flush_interval_s=0.2).run(idle_exit_s=1.0).records == 40
    files = Archive(url).files("events")
    restartable.restart()
    apply_topics(own_settings)
    with pytest.raises(StaleState, match=r"the archiver: the state at archive .* was built from broker log"):
        Archiver(settings=own_settings, archive_url=url).run(idle_exit_s=1.0)
    assert Archive(url).files("events") == files


@pytest.mark.parametrize(("guard", "command", "consumer"), [
    (guard_features_state, "features", "the features worker"),
    (guard_learner_state, "learner", "the learner"),
])
def test_the_faust_workers_refuse_local_state_of_another_log(
    guard: Callable[[Settings], None], command: str, consumer: str, own_settings: Settings,
    restartable: RestartableBroker,
) -> None:
    guard(own_settings)  # what the worker's start does: the marker is kept in its data dir
    restartable.restart()
    environment = {**os.environ, "TANDEM_BOOTSTRAP_SERVERS": own_settings.resolved_bootstrap(),
                   "TANDEM_TOPIC_PREFIX": own_settings.topic_prefix, "TANDEM_STATE_DIR": str(own_settings.state_dir)}
    finished = subprocess.run([sys.executable, "-m", "infra.cli", command, "run"], env=environment,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, finished.stderr
    assert f"{consumer}: the state at {own_settings.state_dir}/faust/" in finished.stderr
    assert "was built from broker log" in finished.stderr


def test_tandem_up_refuses_before_starting_a_worker(own_settings: Settings, restartable: RestartableBroker) -> None:
    refuse_stale_state(own_settings)  # a first `tandem up`: markers recorded with empty state
    refuse_stale_state(own_settings)  # the same log again: nothing to refuse
    restartable.restart()
    apply_topics(own_settings)
    with pytest.raises(StaleState) as refused:
        refuse_stale_state(own_settings)
    lines = str(refused.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["the aggregator", "the features worker", "the learner"]


def test_serving_buffers_through_an_outage_and_delivers_to_the_returned_broker(
    own_settings: Settings, restartable: RestartableBroker
) -> None:
    """Bounded: 40 records fit, the rest is counted as overflow; the 40 reach the broker that comes
    back at the same address, which for the embedded broker is a new, empty log."""
    first_log = current_incarnation(own_settings).id

    async def run() -> None:
        from aiohttp.test_utils import TestClient, TestServer

        service = build_service(own_settings, features=DefaultFeatures(), config=ServingConfig(max_pending=40))
        service.start()
        try:
            async with TestClient(TestServer(build_app(service))) as client:
                assert (await client.post("/recommend", json={"user_id": "before"})).status == 200
                await until(lambda: service.log.acknowledged["decisions"] == 1)
                await asyncio.to_thread(restartable.stop)
                for number in range(100):
                    response = await client.post("/recommend", json={"user_id": f"during-{number}"})
                    assert response.status == 200
                assert service.log.overflowed["decisions"] == 60
                metrics = await (await client.get("/metrics")).text()
                assert 'tandem_serving_records_overflowed_total{topic="decisions"} 60' in metrics
                await asyncio.to_thread(restartable.start)
                await asyncio.to_thread(apply_topics, own_settings)
                await until(lambda: service.log.pending == 0)
                assert service.log.acknowledged["decisions"] == 41 and not service.log.failed
        finally:
            await asyncio.to_thread(service.close, 5.0)

    asyncio.run(run())
    delivered = read_topic(own_settings, own_settings.topic(DECISIONS))
    assert sorted(r.key.decode() for r in delivered) == sorted(f"during-{n}" for n in range(40))
    assert current_incarnation(own_settings).id != first_log


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_log_end_probe_reads_each_partitions_end_one_small_fetch_at_a_time(settings: Settings) -> None:
    """The stale-state check's probe fetches as little as the broker sends and still finds every
    partition's end, past many record batches."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from infra.kafka.config import consumer_config
    from infra.kafka.incarnation import PROBE_FETCH, log_ends

    apply_topics(settings)
    topic = settings.topic(EVENTS)
    counts = {0: 0, 1: 0, 2: 0, 3: 0}
    producer = KafkaProducer(**producer_config(settings, batch_size=1024))
    for i in range(3000):
        part = i % 3  # partition 3 stays empty
        producer.send(topic, value=b"x" * 200, key=f"k{i}".encode(), partition=part)
        counts[part] += 1
    producer.flush()
    producer.close()
    probe = KafkaConsumer(**consumer_config(settings, group_id=None, **PROBE_FETCH))
    try:
        ends = log_ends(probe, [TopicPartition(topic, p) for p in counts])
    finally:
        probe.close()
    assert ends == {(topic, p): n for p, n in counts.items()}
