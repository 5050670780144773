"""A worker's status file: a small JSON document rewritten every second in ``state_dir``.

``tandem features status`` and ``tandem learner status`` read it; the file is replaced
atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra.settings import Settings

STATUS_FILE = "features-worker.json"
#: A worker whose status file is older than this is taken as stopped.
STALE_AFTER_S = 5.0


def status_path(settings: Settings) -> Path:
    """The features worker's status file (the learner's: ``streams.worker.learner.app``)."""
    return settings.state_dir / STATUS_FILE


def worker_status(path: Path) -> dict[str, Any]:
    """A worker's last status and whether it is running (its status file is younger than ``STALE_AFTER_S``)."""
    status = read_status(path)
    return {
        "running": status is not None and status["age_s"] < STALE_AFTER_S,
        "status_file": str(path),
        "status": status,
    }


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, sort_keys=True))
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written, with ``age_s`` (seconds since it was written); None if none."""
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    status["age_s"] = round(time.time() - float(status.get("updated_at", 0.0)), 3)
    return status


def partition_lags(consumer: Any, partitions: Iterable[Any], position: Callable[[Any], int | None]) -> dict[str, int]:
    """Records not read yet per partition (``"topic:partition"``), for the partitions whose
    lag is known (fetched from, with a position; empty ones count 0)."""
    lags: dict[str, int] = {}
    for tp in partitions:
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - not fetched from yet: unknown, left out
            continue
        offset = 0 if highwater == 0 else position(tp)
        if highwater is not None and offset is not None:
            lags[f"{tp.topic}:{tp.partition}"] = max(0, highwater - offset)
    return lags


def consumer_lag(consumer: Any, partitions: Iterable[Any], position: Callable[[Any], int | None]) -> int | None:
    """Records of ``partitions`` (Faust topic-partitions) not read yet, from the consumer's
    high-watermarks and ``position(tp)``, the next offset to read; empty partitions count 0.
    None until every other one was fetched from and has a position: never a false 0."""
    lag = 0
    for tp in partitions:
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched from yet: unknown
            return None
        if highwater == 0:
            continue
        offset = position(tp)
        if highwater is None or offset is None:
            return None
        lag += max(0, highwater - offset)
    return lag
