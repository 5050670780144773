"""Shared fixtures: one embedded broker per test session, unique names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from infra.kafka.broker import EmbeddedBroker
from infra.postgres import EmbeddedPostgres
from infra.settings import Settings, load_settings

INTEGRATION_DIR = Path(__file__).parent / "integration"

# Hypothesis times every example (200 ms deadline) and its data generation (the too_slow
# health check): assertions on speed that a busy machine fails. In CI the examples are
# also derived from each test's name rather than drawn at random, so every run tries the
# same ones; locally they are random, to keep exploring.
hypothesis_settings.register_profile(
    "tandem", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=bool(os.environ.get("CI"))
)
hypothesis_settings.load_profile("tandem")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a test that did not run: it must not pass as green.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; skipped tests count as failures here", red=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded broker, started by the project itself; a failure to start fails the tests."""
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings on the session broker with a topic prefix and state directory of this test's own."""
    return load_settings(
        {},
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def group_id() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL server per test session, started by the project (infra/postgres.py)."""
    with EmbeddedPostgres(data_dir=tmp_path_factory.mktemp("postgres") / "data") as running:
        yield running


@pytest.fixture(scope="session")
def new_postgres_database(postgres: EmbeddedPostgres) -> Callable[[], str]:
    """Makes an empty database on the session's server and returns its DSN (one per test or example)."""
    return lambda: postgres.create_database(f"t{uuid.uuid4().hex[:12]}")
