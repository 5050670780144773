"""A thin, blocking layer over Feast: apply the repository, write rows in batches, read features.

>>> import tempfile, pathlib
>>> with FeatureStoreClient(settings=FeatureStoreSettings(repo_path=pathlib.Path(tempfile.mkdtemp())),
...                         defaults={"plays_1h": 0, "skip_rate_1h": 0.0}) as store:
...     _ = store.write_rows([{"user_id": "u1", "event_timestamp": 1767225600000,
...                            "plays_1h": 3, "skip_rate_1h": 0.25}])
...     store.read(["u1", "nobody"])
{'u1': {'plays_1h': 3, 'skip_rate_1h': 0.25}, 'nobody': {'plays_1h': 0, 'skip_rate_1h': 0.0}}

Every call blocks (Feast's async APIs are not implemented for SQLite): from asyncio code, run
them in an executor. A lock serializes calls, so one client may be shared between threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
import pyarrow as pa

from feature_store import offline
from feature_store.definitions import (
    FEATURE_VIEW,
    JOIN_KEY,
    TIMESTAMP,
    Definitions,
    build_definitions,
    offline_path,
)
from feature_store.errors import FeatureStoreError
from feature_store.feast_quiet import import_feast, quiet, redis_online_store_config
from feature_store.rows import rows_to_table
from feature_store.settings import FeatureStoreSettings

#: The registry store Feast imports by name: ``feature_store.registry_store`` (not imported here, so
#: that importing the client does not import Feast).
REGISTRY_STORE_TYPE = "feature_store.registry_store.AtomicFileRegistryStore"

logger = logging.getLogger(__name__)

#: How Feast serializes entity keys in the online store (the repository config's setting).
ENTITY_KEY_SERIALIZATION_VERSION = 3


@dataclass(frozen=True, slots=True)
class WriteReport:
    written: int  # rows handed to the online store
    stale: int  # rows dropped here: not newer than the stored row (SQLite: older second), or not
    #             the newest of their user in the batch
    offline_files: int


@dataclass(frozen=True, slots=True)
class Freshness:
    event_time: datetime | None  # event time of the user's online row; None if there is none
    lag: timedelta | None  # ``now`` minus that event time


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("now: a naive datetime is ambiguous, give it a timezone")
        return value
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


class FeatureStoreClient:
    """The feature store as tandem uses it; see the module docstring. Start it, or use ``with``."""

    def __init__(self, *, settings: FeatureStoreSettings, defaults: Mapping[str, int | float]) -> None:
        self.settings = settings
        self.defaults: dict[str, int | float] = dict(defaults)
        self.schema = offline.arrow_schema(self.defaults)
        self._lock = threading.Lock()
        self._store: Any = None
        self._view: Any = None
        self._definitions: Definitions | None = None
        self._sqlite_select: str | None = None  # the direct read of the SQLite online table, once started
        self._sqlite_upsert: str | None = None  # the direct write of the SQLite online table, once started
        self.start_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build the Feast config in code and apply the repository (idempotent)."""
        if self._store is not None:
            return
        began = time.perf_counter()
        feast = import_feast()
        repo = self.settings.repo_path.resolve()
        online_config = self._online_config(feast, repo)  # first: a missing redis client fails here
        repo.mkdir(parents=True, exist_ok=True)
        offline_path(repo).mkdir(parents=True, exist_ok=True)
        definitions = build_definitions(
            self.defaults, repo_path=repo, ttl=timedelta(seconds=self.settings.ttl_seconds))
        with quiet():
            config = feast.RepoConfig(
                project=self.settings.project,
                provider="local",
                # replaced whole, never rewritten in place: other processes read it while this one applies
                registry=feast.RegistryConfig(path=str(repo / "registry.db"), cache_ttl_seconds=0,
                                              registry_store_type=REGISTRY_STORE_TYPE),
                online_store=online_config,
                offline_store=feast.DaskOfflineStoreConfig(type="file"),
                repo_path=repo,
                entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION,
            )
            store = feast.FeatureStore(config=config)
            try:
                store.apply(definitions.all())
            except Exception as exc:
                raise FeatureStoreError(f"feast apply failed in {repo}: {exc}") from exc
        self._store, self._definitions = store, definitions
        # The view as applied just now: this client owns the definitions, so it is read from the
        # registry once instead of on every call (the registry cache is off, see above).
        self._view = store.get_feature_view(FEATURE_VIEW)
        if self.reads_in_process:
            self._sqlite_write_ahead_log()
            self._sqlite_select = _sqlite_select(store.config, self._view)
            self._sqlite_upsert = _sqlite_upsert(store.config, self._view)
        self.start_seconds = time.perf_counter() - began
        logger.info("feature store %s applied in %.3f s (%s online store)",
                    self.settings.project, self.start_seconds, self.settings.online_store)

    def _online_config(self, feast: Any, repo: Any) -> Any:
        if self.settings.online_store == "redis":
            secret = self.settings.redis_connection_string
            assert secret is not None  # checked by the settings
            return redis_online_store_config()(connection_string=secret.get_secret_value())
        return feast.SqliteOnlineStoreConfig(path=str(repo / "online.db"))

    @property
    def reads_in_process(self) -> bool:
        """A read is a lookup in a local SQLite file: no network, and (write-ahead log) never
        waiting for a writer; cheap enough to do on an event loop. False for Redis."""
        return self.settings.online_store == "sqlite"

    def _sqlite_write_ahead_log(self) -> None:
        """Put the SQLite online store in WAL mode (kept in the file), so that the serving API's
        reads never wait for the features worker's commits, nor its commits for the reads.

        Feast opens the database in rollback-journal mode, where a commit locks readers out."""
        online = self._store._get_provider().online_store
        with self._lock:
            conn = online._get_conn(self._store.config)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:  # another connection holds a lock: serve anyway
                mode = f"unchanged ({exc})"
        if mode != "wal":
            logger.warning("SQLite online store %s: journal mode %s, not WAL: reads may wait for writes",
                           self.settings.repo_path, mode)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        with self._lock:
            online: Any = getattr(store._get_provider(), "online_store", None)
            conn = getattr(online, "_conn", None)
            if conn is not None:  # the SQLite store keeps one connection open
                conn.close()
                online._conn = None

    def __enter__(self) -> FeatureStoreClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def store(self) -> Any:
        """The underlying ``feast.FeatureStore`` (e.g. for ``get_historical_features``)."""
        if self._store is None:
            raise FeatureStoreError("the feature store is not started: call start() first")
        return self._store

    @property
    def feature_service(self) -> Any:
        self.store  # noqa: B018 - raises if not started
        assert self._definitions is not None
        return self._definitions.feature_service

    # -- online ------------------------------------------------------------------------------

    def write_rows(self, rows: Sequence[Mapping[str, Any]], *, offline_too: bool | None = None) -> WriteReport:
        """Push one batch of rows (``user_id``, ``event_timestamp``, every feature) online.

        ``event_timestamp`` is the row's true event time (aware datetime, or ms since the epoch).
        Per user only the newest row of the batch is written, and never one older than the
        stored row. The stored event times are read first, in one batched read, so ``stale``
        counts what the store keeps out: Feast's Redis store drops writes that are not strictly
        newer (those are dropped here already, and reported); its SQLite store keeps whole
        seconds and overwrites blindly, so here rows from an older second are dropped and,
        within the stored second, the last write wins. Rows also go to the offline Parquet
        (all of them, unless disabled).
        """
        return self.write_table(rows_to_table(rows, self.schema), offline_too=offline_too)

    def write_table(self, table: pa.Table, *, offline_too: bool | None = None) -> WriteReport:
        """``write_rows`` of rows already checked and converted (``feature_store.rows.rows_to_table``
        with this client's ``schema``), e.g. to write them online now and offline later
        (``append_offline``)."""
        store = self.store
        with self._lock:
            newest = _newest_per_user(table)
            fresh = self._drop_not_newer(newest)
            if fresh.num_rows and self._sqlite_upsert is not None:
                self._sqlite_write(fresh)
            elif fresh.num_rows:
                with quiet():
                    store._get_provider().online_write_batch(store.config, self._view, self._online_rows(fresh),
                                                             progress=None)
            files = []
            if self.settings.write_offline if offline_too is None else offline_too:
                files = offline.append(offline_path(self.settings.repo_path.resolve()), table)
        return WriteReport(written=fresh.num_rows, stale=table.num_rows - fresh.num_rows,
                           offline_files=len(files))

    def append_offline(self, table: pa.Table) -> int:
        """Append rows (as ``write_table`` takes them) to the offline Parquet only; files written."""
        with self._lock:
            return len(offline.append(offline_path(self.settings.repo_path.resolve()), table))

    async def write_rows_async(self, rows: Sequence[Mapping[str, Any]]) -> WriteReport:
        """``write_rows`` in a worker thread, for asyncio callers (Feast has no async SQLite)."""
        return await asyncio.to_thread(self.write_rows, rows)

    def _online_rows(self, table: pa.Table) -> list[tuple[Any, dict[str, Any], datetime, None]]:
        """Rows as the online store takes them: entity key, feature name -> ``Value``, event time.

        What ``FeatureStore.push`` hands the provider, built directly: push goes through pandas
        and Feast's generic type map, ~30% of a write. Features are Int64 or Float64 by their
        defaults (``feature_store.definitions``); ``rows_to_table`` checked the values."""
        from feast.protos.feast.types.Value_pb2 import Value

        columns = table.to_pydict()
        kinds = [(name, "double_val" if isinstance(default, float) else "int64_val")
                 for name, default in self.defaults.items()]
        return [
            (_entity_key(user),
             {name: Value(**{kind: columns[name][i]}) for name, kind in kinds},
             columns[TIMESTAMP][i], None)
            for i, user in enumerate(columns[JOIN_KEY])
        ]

    def _sqlite_write(self, table: pa.Table) -> None:
        """The SQLite provider's ``online_write_batch`` in one ``executemany``: the same statement
        and the same column values (serialized key and ``Value``, its text, the naive UTC event
        time through the same connection and adapters), without a Python call and a ``Value``
        dict per feature and row, which were ~90% of a write's cost (a test compares the tables)."""
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.utils import to_naive_utc

        store = self.store
        conn = store._get_provider().online_store._get_conn(store.config)
        columns = table.to_pydict()
        keys = [_serialized_key(user) for user in columns[JOIN_KEY]]
        times = [to_naive_utc(ts) for ts in columns[TIMESTAMP]]
        params = []
        for name, default in self.defaults.items():
            kind = "double_val" if isinstance(default, float) else "int64_val"
            for key, ts, value in zip(keys, times, columns[name], strict=True):
                params.append((key, name, Value(**{kind: value}).SerializeToString(), str(value), ts, None))
        assert self._sqlite_upsert is not None
        with conn:
            conn.executemany(self._sqlite_upsert, params)

    def _drop_not_newer(self, table: pa.Table) -> pa.Table:
        """Rows (one per user) the online store will keep, by the stored event times read first.

        Redis: Feast drops a write unless its event time is strictly newer than the stored one
        (exact, microseconds), so the same rule applies here, whatever ``drop_older_writes``
        says, and the report counts what Redis would drop silently; Feast still checks again
        as it writes. SQLite keeps whole seconds: drop rows from an older second than the
        stored row; within the stored row's second, the last write wins.
        """
        redis = self.settings.online_store == "redis"
        if table.num_rows == 0 or not (redis or self.settings.drop_older_writes):
            return table
        users = table[JOIN_KEY].to_pylist()
        stored = self._stored_times(users)
        times = table[TIMESTAMP].to_pylist()
        if redis:
            keep = [(old := stored[u]) is None or ts > old for u, ts in zip(users, times, strict=True)]
        else:
            keep = [(old := stored[u]) is None or ts.replace(microsecond=0) >= old
                    for u, ts in zip(users, times, strict=True)]
        return table.filter(pa.array(keep, pa.bool_()))

    def _stored_times(self, user_ids: Sequence[str]) -> dict[str, datetime | None]:
        """Event times of the stored rows, as the online store keeps them (SQLite: whole seconds,
        Redis: microseconds), None where there is no row; one batched read of the provider,
        since ``get_online_features`` only gives seconds.

        For a user without a row, SQLite answers ``(None, None)``, but Redis answers the epoch
        and every feature unset (Feast parses an absent ``_ts`` field as a zero timestamp), so
        a row there is one with some value set: every write here sets every feature.
        """
        found = self._online_read(user_ids)
        return {user: ts if _has_a_value(values) else None
                for user, (ts, values) in zip(user_ids, found, strict=True)}

    def _values(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Feature name -> value (None where unset) per user, from one provider read.

        ``get_online_features`` answers the same (the SQLite and Redis tests compare them) but
        spends most of a small read building its response. On SQLite the rows are selected
        directly, as the provider's ``online_read`` selects them less the event time (whose
        conversion, with the provider's per-call setup, was two thirds of a serving request's read)."""
        if self._sqlite_select is not None:
            return self._sqlite_values(user_ids)
        found = self._online_read(user_ids)
        return {user: {name: _python_value(values.get(name)) if values else None for name in self.defaults}
                for user, (_, values) in zip(user_ids, found, strict=True)}

    def _sqlite_values(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = self._sqlite_rows(user_ids)
        out = {}
        for user in user_ids:
            values = found.get(user)
            out[user] = {name: values.get(name) if values else None for name in self.defaults}
        return out

    def _sqlite_rows(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Feature name -> value of the features stored for each user that has a row (a user
        without one is absent), from one ``SELECT`` on Feast's own SQLite connection."""
        from feast.protos.feast.types.Value_pb2 import Value

        store = self.store
        conn = store._get_provider().online_store._get_conn(store.config)
        keys = {_serialized_key(user): user for user in user_ids}
        marks = ",".join("?" * len(keys))
        found: dict[str, dict[str, Any]] = {}
        for key, name, raw in conn.execute(f"{self._sqlite_select} ({marks})", list(keys)):  # noqa: S608 - marks
            value = Value.FromString(raw)
            kind = value.WhichOneof("val")
            found.setdefault(keys[key], {})[name] = (None if kind is None or kind == "null_val"
                                                     else getattr(value, kind))
        return found

    def _online_read(self, user_ids: Sequence[str]) -> list[tuple[datetime | None, dict[str, Any] | None]]:
        store = self.store
        with quiet():
            return list(store._get_provider().online_read(
                store.config, self._view, [_entity_key(user) for user in user_ids]))

    def read(self, user_ids: Sequence[str]) -> dict[str, dict[str, int | float]]:
        """Every feature of each user; an unknown user (or a missing value) gets the default.

        No TTL applies here (Feast ignores it on online reads): check ``freshness`` to know
        how old a user's row is.
        """
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        defaults = self.defaults
        if self._sqlite_select is not None:  # the serving path: one pass over the rows found
            with self._lock:
                rows = self._sqlite_rows(unique)
            return {user: dict(defaults) if (row := rows.get(user)) is None else
                    {name: default if (value := row.get(name)) is None else value
                     for name, default in defaults.items()}
                    for user in unique}
        with self._lock:
            found = self._values(unique)
        return {
            user: {name: default if (value := found[user][name]) is None else value
                   for name, default in defaults.items()}
            for user in unique
        }

    async def read_async(self, user_ids: Sequence[str]) -> dict[str, dict[str, int | float]]:
        """``read`` in a worker thread, for asyncio callers."""
        return await asyncio.to_thread(self.read, user_ids)

    def freshness(self, user_id: str, *, now: datetime | int) -> Freshness:
        """The event time of the user's online row and how far it lags ``now`` (event time).

        With the SQLite online store the event time is truncated to the second."""
        with self._lock:
            event_time = self._stored_times([user_id])[user_id]
        if event_time is None:
            return Freshness(None, None)
        return Freshness(event_time, _as_datetime(now) - event_time)

    # -- offline -----------------------------------------------------------------------------

    def historical_features(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time features for training, read from the offline Parquet.

        For each ``(user_id, event_timestamp)`` row: the user's newest row at or before that
        time and within the TTL; NaN features where there is none. Equivalent to Feast's
        ``get_historical_features`` on this repository, which (0.67 with dask 2026.8) fails
        on entity rows of users without any row and drops rows with no earlier row.
        """
        ts = pd.to_datetime(entity_df[TIMESTAMP], utc=True)
        if ts.empty:
            return offline.point_in_time(entity_df, self.schema.empty_table().to_pandas(),
                                         ttl=timedelta(seconds=self.settings.ttl_seconds))
        ttl = timedelta(seconds=self.settings.ttl_seconds)
        rows = offline.read(offline_path(self.settings.repo_path.resolve()), self.schema,
                            ts.min() - ttl, ts.max())
        return offline.point_in_time(entity_df, rows, ttl=ttl)


def _newest_per_user(table: pa.Table) -> pa.Table:
    """The last row of each user among those with the user's newest timestamp."""
    if table.num_rows <= 1:
        return table
    order = pa.compute.sort_indices(
        table.append_column("__i", pa.array(range(table.num_rows))),
        sort_keys=[(JOIN_KEY, "ascending"), (TIMESTAMP, "ascending"), ("__i", "ascending")])
    ordered = table.take(order)
    users = ordered[JOIN_KEY].to_pylist()
    last = [i == len(users) - 1 or users[i] != users[i + 1] for i in range(len(users))]
    return ordered.filter(pa.array(last, pa.bool_()))


def _has_a_value(values: Mapping[str, Any] | None) -> bool:
    """Whether an online row (feature name -> Feast ``Value`` proto) holds any value."""
    return values is not None and any(v.WhichOneof("val") is not None for v in values.values())


def _sqlite_table(config: Any, view: Any, use: str) -> str | None:
    """The quoted name of the view's table as the SQLite online store names it; None (``use``
    through Feast's provider, logged) if this Feast names it otherwise."""
    try:
        from feast.infra.online_stores import sqlite as feast_sqlite

        versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
        return str(feast_sqlite._quote_id(feast_sqlite._table_id(config.project, view, versioning)))
    except (AttributeError, ImportError, TypeError) as exc:
        logger.info("SQLite online %s through Feast's provider (%s)", use, exc)
        return None


def _sqlite_select(config: Any, view: Any) -> str | None:
    """``SELECT entity_key, feature_name, value FROM <the view's table> WHERE entity_key IN``; None
    (read through the provider) if the table's name is not known."""
    table = _sqlite_table(config, view, "reads")
    if table is None:
        return None
    return f"SELECT entity_key, feature_name, value FROM {table} WHERE entity_key IN"  # noqa: S608 - quoted


def _sqlite_upsert(config: Any, view: Any) -> str | None:
    """The SQLite online store's upsert of one (entity key, feature) value, as Feast 0.67 writes it
    without vectors or ``value_num``; None (write through the provider) otherwise."""
    online = config.online_store
    if getattr(online, "vector_enabled", False) or getattr(online, "enable_openai_compatible_store", False):
        return None
    table = _sqlite_table(config, view, "writes")
    if table is None:
        return None
    return (f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts;")


#: Feast's ``ValueType.STRING``, as ``serialize_entity_key`` writes it.
_STRING = 2

#: What ``serialize_entity_key`` (version 3) writes before a single string join key's value: the
#: key count, then the key's type, length and name, then the value's type.
_KEY_PREFIX = struct.pack("<III", 1, _STRING, len(JOIN_KEY.encode("utf-8"))) + JOIN_KEY.encode("utf-8") + struct.pack(
    "<I", _STRING)


@lru_cache(maxsize=65_536)
def _serialized_key(user_id: str) -> bytes:
    """The user's entity key as Feast stores it: ``serialize_entity_key`` (version 3, which ``start``
    configures) of one string join key, written here without building its protos (five times
    cheaper; a test compares the two)."""
    value = user_id.encode("utf-8")
    return _KEY_PREFIX + struct.pack("<I", len(value)) + value


def _entity_key(user_id: str) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(string_val=user_id)])


def _python_value(value: Any) -> int | float | None:
    """An Int64/Float64 ``Value`` proto as Python; None when absent or unset."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)
