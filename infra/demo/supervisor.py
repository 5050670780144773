"""Starting and stopping tandem's processes, each with its own log, never leaving one behind.

Each stack runs in processes of its own (its own failure domains): the
features worker, the learner, the serving API and the experiment aggregator. A
``Supervisor`` starts them in new sessions (so a terminal's Ctrl-C reaches only
the supervisor, which then stops them in order), records their pids in a state
file for ``tandem down``, and stops them with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from infra.kafka.broker import pid_alive, stop_pid

logger = logging.getLogger(__name__)


#: The niceness of the experimentation stack's processes: on a shared host the kernel gives serving
#: the CPU first when both want it (chaos scenario blast_radius measured the console flooded
#: beside serving at equal priority: serving's p99 went ~2.5x). ``TANDEM_EXPERIMENTATION_NICE``.
EXPERIMENTATION_NICE = 10
AUTOGROUP = Path("/proc/self/autogroup")
#: Where a CPU cgroup can be made: cgroup v1's cpu controller, or v2's single hierarchy.
CPU_CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]  # arguments of the `tandem` command
    #: Added to the process's niceness at start: > 0 lowers its CPU priority, < 0 raises it (that
    #: needs root or CAP_SYS_NICE; without, the process starts at the supervisor's niceness, logged).
    nice: int = 0
    #: A CPU cgroup the process joins at start (``idle_cpu_group``); None: the supervisor's.
    cpu_group: Path | None = None


def tandem_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "infra.cli", *args]


@dataclass
class Supervisor:
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_pids: list[int] = field(default_factory=list)  # every process ever started, restarts included

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "processes.json"

    def start(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                tandem_argv(*spec.argv),
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=session_priority(spec.nice, cpu_group=spec.cpu_group),
            )
        if spec.nice or spec.cpu_group:
            _log_priority(spec, process.pid)
        self.processes[spec.name] = process
        self.started_pids.append(process.pid)
        self._write_state()
        logger.info("started %s (pid %d), log %s", spec.name, process.pid, log_path)
        return process

    def restart(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        old = self.processes.get(spec.name)
        if old is not None and old.poll() is None:
            stop_pid(old.pid, process=old)
        return self.start(spec)

    def kill(self, name: str) -> None:
        """SIGKILL one process (fault injection in the demo's isolation test)."""
        process = self.processes[name]
        process.kill()
        process.wait(timeout=10)

    def check(self) -> None:
        """Raise if a process has died on its own."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with code {code}; see {self.log_dir / (name + '.log')}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop_all(self) -> None:
        """Stop in reverse start order: the producers of work go before their consumers' inputs."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                stop_pid(process.pid, process=process)
            logger.info("stopped %s (exit %s)", name, process.returncode)
        self.processes.clear()
        self.state_file.unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {name: {"pid": p.pid, "argv": list(p.args)} for name, p in self.processes.items()}  # type: ignore[arg-type]
        self.state_file.write_text(json.dumps(state, indent=2))

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def session_priority(nice: int, *, cpu_group: Path | None = None) -> Callable[[], None] | None:
    """The ``preexec_fn`` of a child started with ``start_new_session=True`` (it runs after
    ``setsid``): join ``cpu_group`` if given, add ``nice`` to the child's niceness, and give its
    session's autogroup the same.

    Why the autogroup: with ``kernel.sched_autogroup_enabled`` (the default of most distributions)
    every session is a scheduling group of its own, and the kernel shares the CPU between groups
    by the group's niceness; a process's own niceness only weighs it against the rest of its
    session. The supervisor starts each process in a new session, so without this a niced console
    got as much CPU as serving (blast radius, docs/operations.md). A refusal (no CAP_SYS_NICE for a
    negative value, no autogroup in the kernel, a cgroup that cannot be joined) leaves the
    priority as it was."""
    if nice == 0 and cpu_group is None:
        return None
    procs = None if cpu_group is None else str(cpu_group / "cgroup.procs")

    def apply() -> None:  # in the child: no logging, no locks
        if procs is not None:
            try:
                with open(procs, "w") as group:
                    group.write("0")  # this process
            except OSError:
                pass
        if nice == 0:
            return
        try:
            os.nice(nice)
        except OSError:
            return
        try:
            AUTOGROUP.write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))
        except OSError:
            pass

    return apply


def idle_cpu_group(name: str) -> Path | None:
    """A CPU cgroup ``tandem-<name>`` with ``cpu.idle`` set (Linux 5.15+): its processes run on
    the CPU time no other process wants, and a waking process outside it (serving) preempts them
    at once. Niceness alone leaves serving waiting behind a busy niced console on a shared host
    (blast radius, docs/operations.md). None where no such group can be made (not root, no cpu
    controller, an older kernel): the caller keeps niceness only."""
    for root in CPU_CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists():
            continue
        group = root / f"tandem-{name}"
        try:
            if root.name == "cgroup":  # v2: the cpu controller must be enabled for the children
                (root / "cgroup.subtree_control").write_text("+cpu")
            group.mkdir(exist_ok=True)
            (group / "cpu.idle").write_text("1")
        except OSError:
            continue
        return group
    return None


def cpu_group_of(pid: int) -> str | None:
    """The cpu cgroup a process is in ("/" for the root), from ``/proc/<pid>/cgroup``."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    groups = dict(line.split(":", 2)[1:] for line in lines)  # "1:cpu:/tandem-x" (v1), "0::/tandem-x" (v2)
    v1 = next((path for controllers, path in groups.items() if "cpu" in controllers.split(",")), None)
    return v1 if v1 is not None else groups.get("")


def priority(pid: int) -> tuple[int, int | None]:
    """A process's niceness and its autogroup's (None without autogroups)."""
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    try:
        group = Path(f"/proc/{pid}/autogroup").read_text().split()  # "/autogroup-123 nice 10"
        return nice, int(group[-1])
    except (OSError, ValueError, IndexError):
        return nice, None


def _log_priority(spec: ProcessSpec, pid: int) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = max(-20, min(19, own + spec.nice))
    try:
        nice, group = priority(pid)
    except OSError:  # already gone: its log says why
        return
    if nice != wanted or group not in (None, wanted):
        logger.warning("%s runs at niceness %d (autogroup %s), not %d: raising a priority needs root or "
                       "CAP_SYS_NICE", spec.name, nice, group, wanted)
    if spec.cpu_group is not None and cpu_group_of(pid) != "/" + spec.cpu_group.name:
        logger.warning("%s did not join the CPU group %s (it is in %s)", spec.name, spec.cpu_group, cpu_group_of(pid))


def stop_recorded(state_dir: Path) -> list[str]:
    """``tandem down``: stop the processes a detached ``tandem up`` recorded (only those pids)."""
    state_file = state_dir / "processes.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return []
    stopped = []
    for name, entry in reversed(list(state.items())):
        pid = int(entry["pid"])
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pid_alive(pid) and "infra.cli" in command_line:
            stop_pid(pid)
            stopped.append(name)
    state_file.unlink(missing_ok=True)
    return stopped


def wait_for(condition, *, timeout_s: float, interval_s: float = 0.2, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s")
