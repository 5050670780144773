"""What the broker-outage and blast-radius scenarios share: an embedded stack in a work dir whose
broker can stop and come back at the same address, processes started through ``tandem``, fixed-rate
load on serving, and serving's own figures (``/health``, ``/metrics``).

Everything started here is stopped by ``RestartableStack.close`` (a context manager), also on failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from infra.demo.supervisor import ProcessSpec, Supervisor, wait_for
from infra.kafka.broker import EmbeddedBroker, free_port
from infra.kafka.topics import apply_topics
from infra.settings import Settings, load_settings

logger = logging.getLogger(__name__)


class RestartableStack:
    """A broker on a port of its own, topics, and ``tandem`` processes, all under ``work_dir``."""

    def __init__(self, work_dir: Path, *, topic_prefix: str) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._broker: EmbeddedBroker | None = None
        self.settings: Settings = load_settings(
            {}, bootstrap_servers=f"127.0.0.1:{self.port}", topic_prefix=topic_prefix,
            state_dir=(work_dir / "state").resolve(),
        )
        self.supervisor = Supervisor(state_dir=self.settings.state_dir, env=self.env())

    def env(self) -> dict[str, str]:
        """The environment of the stack's processes (and of ``tandem`` commands run against it)."""
        return {
            "TANDEM_BOOTSTRAP_SERVERS": self.settings.resolved_bootstrap(),
            "TANDEM_STATE_DIR": str(self.settings.state_dir),
            "TANDEM_TOPIC_PREFIX": self.settings.topic_prefix,
        }

    # -- the broker --------------------------------------------------------------------------------
    def start_broker(self) -> None:
        """Start the broker (an empty log: the embedded broker keeps none across restarts) and the topics."""
        self._broker = EmbeddedBroker(port=self.port, log_path=self.work_dir / "broker.log").start()
        apply_topics(self.settings)

    def stop_broker(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    # -- processes ---------------------------------------------------------------------------------
    def start(self, name: str, *argv: str, nice: int = 0, cpu_group: Path | None = None) -> subprocess.Popen[bytes]:
        return self.supervisor.start(ProcessSpec(name, argv, nice=nice, cpu_group=cpu_group))

    def start_serving(self, *extra: str, nice: int = 0) -> str:
        """``tandem serve`` on a free loopback port; its URL once ``/health`` answers."""
        port = free_port()
        self.start("serving", "serve", "--port", str(port), *extra, nice=nice)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: health(url) is not None, timeout_s=90, what="serving's /health")
        return url

    def close(self) -> None:
        try:
            self.supervisor.stop_all()
        finally:
            self.stop_broker()

    def __enter__(self) -> RestartableStack:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def health(url: str) -> dict[str, Any] | None:
    """Serving's ``/health`` (its decision log's counters), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - our loopback URL
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except OSError:
        return None


def metric_total(url: str, family: str) -> float:
    """The sum over labels of one counter family on ``/metrics`` (Prometheus text)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - our loopback URL
        text = response.read().decode()
    pattern = re.compile(rf"^{re.escape(family)}(?:_total)?(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def load(url: str, *, rps: float, duration_s: float, seed: int, warmup_s: float = 0.0,
         users: int = 10_000, t0_ms: int | None = None) -> dict[str, Any]:
    """Open-loop fixed-rate load on ``POST /recommend`` (``bench.loadgen``): latency percentiles
    from each request's due time, and the error count. ``t0_ms``: the requests' first event time
    (default: inside the demo's experiments)."""
    from bench.loadgen import T0_MS, generate

    return asyncio.run(generate(url=url, rps=rps, duration_s=duration_s, warmup_s=warmup_s, users=users,
                                seed=seed, t0_ms=T0_MS if t0_ms is None else t0_ms))


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base`` to 3 decimals; None when either is unknown (or the base is 0)."""
    return None if value is None or not base else round(value / base, 3)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
