"""The supervisor starts the experimentation stack's processes at a lower CPU priority than serving."""

from __future__ import annotations

import os
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
