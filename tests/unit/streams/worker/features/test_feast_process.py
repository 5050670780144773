"""The writer process: rows online at once, their offline Parquet when the worker syncs (before its acks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from feature_store import FeatureStoreClient, FeatureStoreSettings
from feature_store.definitions import offline_path
from streams.features import default_features
from streams.worker.features.feast_process import ProcessFeatureWriter

DEFAULTS = default_features()


def test_rows_are_online_at_once_and_offline_after_a_sync(tmp_path) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    writer = ProcessFeatureWriter(tmp_path)
    try:
        assert writer.write_rows([{"user_id": "u1", "event_timestamp": at, **DEFAULTS, "plays_1h": 4}]) == 1
        assert writer.write_rows([{"user_id": "u2", "event_timestamp": at, **DEFAULTS, "plays_1h": 5}]) == 1
        parts = offline_path(tmp_path.resolve())
        assert not list(parts.rglob("*.parquet"))  # deferred
        with FeatureStoreClient(settings=FeatureStoreSettings(repo_path=tmp_path), defaults=DEFAULTS) as store:
            assert {u: f["plays_1h"] for u, f in store.read(["u1", "u2"]).items()} == {"u1": 4, "u2": 5}
            assert writer.sync_offline() == 2
            assert len(list(parts.rglob("*.parquet"))) == 1  # one file for both batches
            assert writer.sync_offline() == 0
            found = store.historical_features(pd.DataFrame({"user_id": ["u1", "u2"], "event_timestamp": [at, at]}))
            assert sorted(found["plays_1h"]) == [4, 5]
    finally:
        writer.close()
