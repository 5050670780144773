"""Import Feast lazily and keep its noise out of tandem's logs.

Feast 0.67 has no usage telemetry (``FEAST_USAGE`` is gone), so nothing needs turning off;
importing it costs about 4 s, so it happens at ``start()``, not at ``import feature_store``.
Its warnings (and those of dask/pandas under it) are silenced only around our calls.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from feature_store.errors import FeatureStoreError

_NOISY_MODULES = r"(feast|dask|pandas|pyarrow|google\.protobuf)(\..*)?"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning, RuntimeWarning):
            warnings.filterwarnings("ignore", category=category, module=_NOISY_MODULES)
        yield


def _load(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as exc:  # Feast raises its own FeastExtrasDependencyImportError, not ImportError
        reason = str(exc).splitlines()[0]
        raise FeatureStoreError(f"cannot import {path}: {reason} (is feast's extra installed?)") from exc


def import_feast() -> SimpleNamespace:
    with quiet():
        return SimpleNamespace(
            FeatureStore=_load("feast.FeatureStore"),
            RepoConfig=_load("feast.RepoConfig"),
            RegistryConfig=_load("feast.repo_config.RegistryConfig"),
            SqliteOnlineStoreConfig=_load("feast.infra.online_stores.sqlite.SqliteOnlineStoreConfig"),
            DaskOfflineStoreConfig=_load("feast.infra.offline_stores.dask.DaskOfflineStoreConfig"),
        )


def redis_online_store_config() -> Any:
    """Feast's Redis online store config, once the ``redis`` client is known to be importable.

    Feast looks for the client only when its own redis module is first imported; after that the
    module stays in ``sys.modules`` and nothing checks again. So the client is checked here, on
    every call, and its absence is a ``FeatureStoreError`` naming it, whatever was imported before.
    """
    try:
        importlib.import_module("redis")
    except ImportError as exc:
        raise FeatureStoreError(
            f"online_store='redis' needs the redis client, which cannot be imported: {exc} "
            "(install feast[redis])") from exc
    with quiet():
        return _load("feast.infra.online_stores.redis.RedisOnlineStoreConfig")
