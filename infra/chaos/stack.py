"""What every chaos scenario stands on: its own embedded broker, settings and supervised workers.

A scenario opens a ``ChaosStack`` in its work directory; the stack starts the broker, provisions
the topics under a prefix of its own, and starts, SIGKILLs and restarts workers through the demo's
``Supervisor`` (each in its own process, session and log). Leaving the ``with`` block stops every
process it started, also when the scenario failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.demo.supervisor import ProcessSpec, Supervisor
from infra.kafka.broker import EmbeddedBroker
from infra.kafka.topics import apply_topics
from infra.settings import Settings, load_settings

logger = logging.getLogger(__name__)


@dataclass
class ChaosStack:
    broker: EmbeddedBroker
    settings: Settings
    supervisor: Supervisor

    @property
    def log_dir(self) -> Path:
        return self.supervisor.log_dir

    def start(self, name: str, *argv: str) -> int:
        """Start (or restart) worker ``name`` as ``tandem ARGV``; its pid."""
        return self.supervisor.restart(ProcessSpec(name, argv)).pid

    def sigkill(self, name: str) -> None:
        self.supervisor.kill(name)

    def exit_code(self, name: str) -> int | None:
        return self.supervisor.processes[name].poll()

    def wait_exit(self, name: str, *, timeout_s: float) -> int:
        return self.supervisor.processes[name].wait(timeout=timeout_s)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.supervisor.log_tail(name, lines)


def worker_env(settings: Settings) -> dict[str, str]:
    """What a worker needs to find this stack's broker, state and topics."""
    return {
        "TANDEM_BOOTSTRAP_SERVERS": settings.resolved_bootstrap(),
        "TANDEM_STATE_DIR": str(settings.state_dir.resolve()),
        "TANDEM_TOPIC_PREFIX": settings.topic_prefix,
        "TANDEM_PARTITIONS": str(settings.partitions),
    }


@contextlib.contextmanager
def chaos_stack(work_dir: Path, *, prefix: str = "chaos.", partitions: int = 4,
                extra_env: dict[str, str] | None = None, **settings_overrides: Any) -> Iterator[ChaosStack]:
    """A fresh broker, topics and supervisor in ``work_dir``; everything is stopped on exit.

    ``work_dir`` is emptied first: the broker keeps its log in memory, so state left by an earlier run
    (the aggregator's database, the workers' RocksDB tables) belongs to a log that no longer exists."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with EmbeddedBroker(log_path=work_dir / "broker.log") as broker:
        settings = load_settings({}, bootstrap_servers=broker.bootstrap, topic_prefix=prefix,
                                 partitions=partitions, state_dir=work_dir / "state", **settings_overrides)
        apply_topics(settings)
        supervisor = Supervisor(state_dir=work_dir, env={**worker_env(settings), **(extra_env or {})})
        with supervisor:
            yield ChaosStack(broker=broker, settings=settings, supervisor=supervisor)


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str,
               alive: Callable[[], None] | None = None, interval_s: float = 0.1) -> None:
    """Poll ``condition`` until it holds; ``alive`` raises when a process it depends on died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def http_json(url: str, *, timeout_s: float = 2.0) -> Any:
    """GET ``url`` and parse its JSON body; None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our loopback URL
            return json.load(response) if response.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None
