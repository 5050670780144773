"""Feature-store writes in a process of their own.

Feast's SQLite write is mostly Python: run in a thread of the worker it competes for the GIL
with the event loop and the Kafka consumer thread, and measured ~1 ms per row instead of
~0.2 ms alone. A one-process pool keeps the batcher's contract (``write_rows`` blocks, the
batcher runs it off the event loop) while the write runs on the other core.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

_client: Any = None


def _exit_with(parent: int) -> None:
    """End this process once ``parent`` is gone: a SIGKILLed worker cannot shut its pool down,
    and the writer would otherwise live on, orphaned, with the store open."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _start(repo_path: str, parent: int) -> None:
    global _client
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    from feature_store import FeatureStoreClient, FeatureStoreSettings
    from streams.features import default_features

    # The worker is the only writer of a user's row and writes its current state: its rows never
    # go back in time, so the SQLite store's read-before-write (~40% of a write) buys nothing.
    _client = FeatureStoreClient(
        settings=FeatureStoreSettings(repo_path=Path(repo_path), drop_older_writes=False),
        defaults=default_features(),
    )
    _client.start()


def _write(rows: Sequence[Mapping[str, Any]]) -> int:
    return int(_client.write_rows(rows).written)


class ProcessFeatureWriter:
    """``write_rows(rows)`` through a FeatureStoreClient living in a child process."""

    def __init__(self, repo_path: Path) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start, initargs=(str(repo_path), os.getpid()),
        )
        self._pool.submit(_write, []).result()  # start Feast now, not at the first flush

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return self._pool.submit(_write, list(rows)).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
