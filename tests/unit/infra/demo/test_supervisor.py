"""The supervisor starts the experimentation stack's processes at a lower CPU priority than serving."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from infra.demo import supervisor
from infra.demo.run import worker_specs
from infra.demo.supervisor import EXPERIMENTATION_NICE, ProcessSpec, Supervisor


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_experimentation_stack_runs_niced_and_serving_does_not() -> None:
    specs = worker_specs(8080, 8090)
    assert specs["experiments"].nice == specs["console"].nice == EXPERIMENTATION_NICE > 0
    assert specs["serving"].nice == specs["personalization"].nice == specs["learner"].nice == 0


def test_a_spec_with_nice_starts_a_process_at_that_niceness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "tandem_argv", lambda *args: ["sleep", "30"])
    own = os.nice(0)
    with Supervisor(state_dir=tmp_path) as running:
        niced = running.start(ProcessSpec("niced", ("x",), nice=EXPERIMENTATION_NICE))
        plain = running.start(ProcessSpec("plain", ("x",)))
        assert niceness(niced.pid) == min(19, own + EXPERIMENTATION_NICE)
        assert niceness(plain.pid) == own


needs_autogroups = pytest.mark.skipif(
    not supervisor.AUTOGROUP.exists()
    or Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1",
    reason="the kernel groups no sessions (no sched autogroup)",
)


@needs_autogroups
def test_a_niced_process_gets_its_session_group_niced_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: each process runs in a session of its own, hence a scheduling group of its own, and
    the kernel shares the CPU between groups by the group's niceness. A niced console with its group
    at 0 took as much CPU as serving under the blast radius's flood (ratio 5.3)."""
    monkeypatch.setattr(supervisor, "tandem_argv", lambda *args: ["sleep", "30"])
    own = os.nice(0)
    with Supervisor(state_dir=tmp_path) as running:
        niced = running.start(ProcessSpec("niced", ("x",), nice=EXPERIMENTATION_NICE))
        plain = running.start(ProcessSpec("plain", ("x",)))
        assert supervisor.priority(niced.pid) == (min(19, own + EXPERIMENTATION_NICE),) * 2
        assert supervisor.priority(plain.pid)[0] == own


@needs_autogroups
@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root")
def test_a_negative_nice_raises_the_priority_of_the_process_and_its_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "tandem_argv", lambda *args: ["sleep", "30"])
    own = os.nice(0)
    with Supervisor(state_dir=tmp_path) as running:
        raised = running.start(ProcessSpec("serving", ("x",), nice=-5))
        assert supervisor.priority(raised.pid) == (max(-20, own - 5),) * 2


def test_the_priorities_follow_the_settings() -> None:
    specs = worker_specs(8080, 8090, experimentation_nice=15, serving_nice=-5)
    assert specs["experiments"].nice == specs["console"].nice == 15
    assert specs["serving"].nice == -5 and specs["learner"].nice == 0


needs_cpu_cgroups = pytest.mark.skipif(
    supervisor.idle_cpu_group("test") is None, reason="no writable cpu cgroup controller (needs root)"
)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@needs_cpu_cgroups
def test_a_process_in_the_idle_cpu_group_runs_only_on_the_cpu_others_leave(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two busy processes on one CPU: the one in the idle group gets a sliver, the other nearly all
    (the kernel's cpu.idle: weight 3 against 1024, and preempted when the other wakes)."""
    group = supervisor.idle_cpu_group("test")
    assert group is not None and (group / "cpu.idle").read_text().strip() == "1"
    monkeypatch.setattr(supervisor, "tandem_argv", lambda *args: [sys.executable, "-c", "while True: pass"])
    with Supervisor(state_dir=tmp_path) as running:
        idle = running.start(ProcessSpec("console", ("x",), nice=EXPERIMENTATION_NICE, cpu_group=group))
        busy = running.start(ProcessSpec("serving", ("x",)))
        assert supervisor.cpu_group_of(idle.pid) == "/tandem-test"
        assert supervisor.cpu_group_of(busy.pid) != "/tandem-test"
        one_cpu = {min(os.sched_getaffinity(0))}
        for process in (idle, busy):
            os.sched_setaffinity(process.pid, one_cpu)
        before = cpu_ticks(idle.pid), cpu_ticks(busy.pid)
        time.sleep(2.0)
        idle_ticks, busy_ticks = cpu_ticks(idle.pid) - before[0], cpu_ticks(busy.pid) - before[1]
    assert busy_ticks > 10 * max(idle_ticks, 1), (idle_ticks, busy_ticks)
    group.rmdir()


def test_the_console_joins_the_cpu_group_it_is_given_and_the_workers_do_not(tmp_path: Path) -> None:
    """The aggregator stays out of the idle group: starved there on a busy host, it missed its consumer
    group's heartbeats and fell behind for minutes (a demo at 4,500 users beside benchmarks)."""
    specs = worker_specs(8080, 8090, console_cpu_group=tmp_path)
    assert specs["console"].cpu_group == tmp_path
    assert all(specs[name].cpu_group is None for name in ("experiments", "serving", "learner", "personalization"))
