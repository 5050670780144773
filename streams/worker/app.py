"""The one Faust app factory of the personalization workers (the features worker and the learner).

``new_app(settings, name)`` builds a ``faust.App`` with tandem's settings: raw bytes, manual acks,
the prompt fetch (``streams.worker.transport``), Faust's local state under ``state_dir``, and on
the embedded profile one record per produce batch. Why the last: Faust rebuilds a table (and the
learner its checkpoint) by reading up to the partition's end offset, which the embedded broker
under-reports when a produce batch holds more than one record (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.kafka.config import faust_config, fetch_max_wait_ms
from infra.kafka.incarnation import guard_state_dir
from infra.settings import Settings


def app_id(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}{name}"


def app_datadir(settings: Settings, app_name: str) -> Path:
    """Faust's local state (tables) of one app."""
    return settings.state_dir / "faust" / app_name


INCARNATION_FILE = "incarnation.json"


def guard_local_state(settings: Settings, app_name: str, *, consumer: str, also: tuple[Path, ...] = ()) -> None:
    """Refuse to start ``app_name`` on state built from another broker log (``infra.kafka.incarnation``):
    its Faust data dir, and ``also`` (other state it keeps, e.g. the online feature store)."""
    datadir = app_datadir(settings, app_name)
    held = [path for path in datadir.glob("*") if path.name != INCARNATION_FILE]
    held += [path for path in also if path.exists()]
    guard_state_dir(settings, consumer=consumer, marker=datadir / INCARNATION_FILE, has_state=bool(held))


def default_store() -> str:
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return "memory://"
    return "rocksdb://"


def new_app(
    settings: Settings,
    app_name: str,
    *,
    store: str = "memory://",
    one_record_per_batch: bool | None = None,
    commit_interval_s: float | None = None,
) -> Any:
    """A personalization Faust app with tandem's settings (raw bytes, manual acks, the prompt
    fetch); its id and consumer group are ``app_id(settings, app_name)``."""
    from streams.worker.transport import PromptApp

    if one_record_per_batch is None:
        one_record_per_batch = settings.embedded
    options = faust_config(settings)
    if one_record_per_batch:
        options["producer_max_batch_size"] = 1
    # Acks are manual: records fetched but not yet processed are never acked, so waiting for
    # "empty streams" at shutdown or rebalance would wait forever. Unacked records are replayed.
    options["stream_wait_empty"] = False
    if commit_interval_s is not None:
        options["broker_commit_interval"] = commit_interval_s
    datadir = app_datadir(settings, app_name)
    datadir.mkdir(parents=True, exist_ok=True)
    return PromptApp(
        app_id(settings, app_name),
        fetch_max_wait_ms=fetch_max_wait_ms(settings),
        datadir=str(datadir),
        store=store,
        key_serializer="raw",
        value_serializer="raw",
        **options,
    )


def on_rebalance(app: Any, forget: Callable[[], None]) -> None:
    """Call ``forget`` whenever the group takes partitions from this worker or gives it new ones:
    what the worker holds in memory for records it has not committed may belong to another worker now."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust accepts coroutines here
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        forget()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust accepts coroutines here
    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        forget()
