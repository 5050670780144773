"""The features worker's Faust app: the features agent, its table, its batcher and its status.

``make_app(settings, feature_store=...)`` builds a ``faust.App`` whose id (and consumer group)
is ``<topic prefix>tandem-personalization``. It reads ``events`` as raw bytes and keeps one
JSON state per user in the table ``user-features`` (changelog topic
``<app id>-user-features-changelog``).

Recovery on the embedded broker (docs/architecture.md): Faust rebuilds a table by reading its changelog
up to the partition's end offset, which that broker under-reports when a produce batch holds
more than one record, so the tail of the changelog would be silently skipped. Two defences:

- the table lives in RocksDB (rocksdict) under ``state_dir``: Faust writes every update to
  the local database before sending it to the changelog, and stores per partition the
  changelog offset it holds; after a crash on the same host, recovery starts from there and
  the local database already holds every update, so a short end offset skips nothing;
- ``producer_max_batch_size=1`` (the default here on the embedded profile) makes the producer
  write one record per batch, which keeps the broker's end offsets right, for the memory
  store and for a partition that moves to another host.

One record per batch also means one changelog record per partition per produce round trip,
and Faust stops dispatching records while its producer buffer is full: a table write per
event held the worker at ~2.3k events/s. So the adapter writes each changed user once per
``persist_interval_s`` (see ``streams.worker.features.agent``), and events are acked after
that write. The SIGKILL-and-restart integration test checks the result against the oracle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infra.kafka.topics import DEAD_LETTERS, EVENTS
from infra.metrics import METRICS_PORTS
from infra.settings import Settings
from streams.features import DEFAULT_CONFIG, FeatureConfig
from streams.worker.app import default_store, new_app, on_rebalance
from streams.worker.dead_letters import DeadLetters
from streams.worker.features.agent import FeaturesAdapter, install
from streams.worker.features.batching import MicroBatcher
from streams.worker.metrics import WorkerMetrics, features_families
from streams.worker.status import consumer_lag, partition_lags, status_path, write_status

logger = logging.getLogger(__name__)

APP_NAME = "tandem-personalization"
TABLE_NAME = "user-features"


def make_app(
    settings: Settings,
    *,
    feature_store: Any,
    store: str | None = None,
    flush_records: int = 1000,
    flush_ms: float = 10.0,
    one_record_per_batch: bool | None = None,
    status_interval_s: float = 1.0,
    commit_interval_s: float | None = None,
    persist_interval_s: float = 5.0,
    app_name: str = APP_NAME,
    config: FeatureConfig = DEFAULT_CONFIG,
    metrics_port: int | None = METRICS_PORTS["features"],
) -> Any:
    """The app; ``feature_store`` is a started ``FeatureStoreClient`` (or anything with
    ``write_rows(rows)``). ``one_record_per_batch`` defaults to True on the embedded profile.
    ``/metrics`` is served on loopback ``metrics_port`` (0: any free port, None: not served);
    the port taken is in the status file."""
    import faust

    app = new_app(settings, app_name, store=store or default_store(), one_record_per_batch=one_record_per_batch,
                  commit_interval_s=commit_interval_s)
    events = app.topic(settings.topic(EVENTS), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    dead_topic = app.topic(settings.topic(DEAD_LETTERS), key_serializer="raw", value_serializer="raw")
    table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions,
                      schema=faust.Schema(key_serializer="raw", value_serializer="json"))
    batcher = MicroBatcher(write=feature_store.write_rows, ack=lambda event: adapter.ack(event),
                           max_records=flush_records, max_delay_ms=flush_ms)
    adapter = FeaturesAdapter(table=table, batcher=batcher, dead_letters=DeadLetters(dead_topic), config=config,
                              generation=lambda: app.consumer_generation_id,
                              changelog_backlog=lambda: app.producer.buffer.size,
                              before_ack=_deferred_writes(feature_store))
    install(app, topic=events, adapter=adapter)
    app.tandem_adapter = adapter  # type: ignore[attr-defined]  # for tests and the status writer

    @app.task
    async def flush_by_age() -> None:
        await batcher.tick_forever()

    @app.timer(interval=persist_interval_s)
    async def persist_states() -> None:
        await adapter.persist_and_ack()

    on_rebalance(app, adapter.forget_states)

    path = status_path(settings)
    metrics = WorkerMetrics(lambda status: features_families(status, batcher.freshness))
    app.tandem_metrics = metrics  # type: ignore[attr-defined]
    served: dict[str, int | None] = {"metrics_port": None}

    if metrics_port is not None:
        @app.task
        async def serve_metrics() -> None:
            served["metrics_port"] = metrics.start(metrics_port)

    @app.timer(interval=status_interval_s)
    async def publish_status() -> None:
        status = {**snapshot(app, adapter, events.get_topic_name()), **served}
        metrics.publish(status)
        write_status(path, status)

    return app


def _deferred_writes(feature_store: Any) -> Callable[[], Awaitable[object]] | None:
    """The writer's ``sync_offline`` (``ProcessFeatureWriter``) off the event loop, if it has one."""
    sync = getattr(feature_store, "sync_offline", None)
    if sync is None:
        return None

    async def deferred() -> object:
        return await asyncio.to_thread(sync)

    return deferred


def snapshot(app: Any, adapter: FeaturesAdapter, topic: str) -> dict[str, Any]:
    """What the status file says: counters, flushes, freshness and lag."""
    batcher = adapter.batcher
    partitions = sorted(tp for tp in app.consumer.assignment() if tp.topic == topic)
    committed_offsets = {tp: app.consumer._committed_offset.get(tp) for tp in partitions}

    def position(tp: Any) -> int | None:
        read = adapter.positions.get(tp)
        return committed_offsets[tp] if read is None else read

    lag = consumer_lag(app.consumer, partitions, position)
    lag_by_partition = partition_lags(app.consumer, partitions, position)
    committed = sum(offset or 0 for offset in committed_offsets.values())
    assigned = [tp.partition for tp in partitions]
    stats = batcher.stats
    return {
        "pid": os.getpid(),
        "app_id": app.conf.id,
        "updated_at": time.time(),
        "assigned_partitions": assigned,
        "processed": adapter.counts["processed"],
        "accepted": adapter.counts["accepted"],
        "duplicates": adapter.counts["duplicate"],
        "late": adapter.counts["late"],
        "invalid": adapter.counts["invalid"],
        "dead_lettered": adapter.dead_letters.count,
        "waiting": batcher.waiting + adapter.waiting,
        "table_writes": adapter.table_writes,
        "flushes": stats.flushes,
        "rows_written": stats.rows_written,
        "records_flushed": stats.records_flushed,
        "write_errors": stats.write_errors,
        "last_write_error": stats.last_error,
        "last_flush_ms": stats.last_flush_ms,
        "lag": lag,
        "lag_by_partition": lag_by_partition,
        "committed": committed,  # sum over the events partitions of the committed offsets
        **batcher.freshness.summary(),
        **batcher.stage_summary(),
    }
