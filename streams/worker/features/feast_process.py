"""Feature-store writes in a process of their own.

Feast's SQLite write is mostly Python: run in a thread of the worker it competes for the GIL
with the event loop and the Kafka consumer thread, and measured ~1 ms per row instead of
~0.2 ms alone. A one-process pool keeps the batcher's contract (``write_rows`` blocks, the
batcher runs it off the event loop) while the write runs on the other core.

``write_rows`` writes online only; the rows' offline Parquet waits in the writer process and is
written by ``sync_offline`` (or once ``OFFLINE_BUFFER_ROWS`` wait). The worker calls it before it
acknowledges the records of those rows (``FeaturesAdapter.persist_and_ack``), so a crash loses
no offline row of a committed record, and a short batch costs no Parquet file of its own (a file
per batch was 1-2 ms of each write and, at a batch every ~10-100 ms, thousands of files an hour).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Rows whose offline Parquet may wait in the writer process for ``sync_offline``.
OFFLINE_BUFFER_ROWS = 50_000

_client: Any = None
_offline: list[Any] = []  # pyarrow tables written online, waiting for their Parquet


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
    from feature_store.rows import rows_to_table

    if not rows:
        return 0
    table = rows_to_table(rows, _client.schema)
    written = int(_client.write_table(table, offline_too=False).written)
    if _client.settings.write_offline:
        _offline.append(table)
        if sum(part.num_rows for part in _offline) >= OFFLINE_BUFFER_ROWS:
            _sync()
    return written


def _sync() -> int:
    """Write the waiting offline rows; how many."""
    import pyarrow as pa

    if not _offline:
        return 0
    table = pa.concat_tables(_offline)
    _client.append_offline(table)
    _offline.clear()  # only once written: a failed append is retried by the next sync
    return int(table.num_rows)


class ProcessFeatureWriter:
    """``write_rows(rows)`` through a FeatureStoreClient living in a child process."""

    def __init__(self, repo_path: Path) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start, initargs=(str(repo_path), os.getpid()),
        )
        self._pool.submit(_write, []).result()  # start Feast now, not at the first flush

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``rows`` online (blocking); their offline Parquet waits for ``sync_offline``."""
        return self._pool.submit(_write, list(rows)).result()

    def sync_offline(self) -> int:
        """Write the offline Parquet of every row written so far (blocking); how many rows."""
        return self._pool.submit(_sync).result()

    def close(self) -> None:
        try:
            self.sync_offline()  # their records may be unacked still: then they are replayed anyway
        except Exception:  # noqa: BLE001 - e.g. the writer process died: nothing more to save
            logger.warning("offline rows not written at close", exc_info=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
