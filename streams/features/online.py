"""The online feature store opened with this feature schema's defaults, for readers (serving,
``tandem features get``); the features worker writes through ``streams.worker.features.feast_process``."""

from __future__ import annotations

from feature_store import FeatureStoreClient, FeatureStoreSettings
from infra.settings import Settings
from streams.features.config import default_features


def open_online_store(settings: Settings, *, drop_older_writes: bool = True) -> FeatureStoreClient:
    """A started ``FeatureStoreClient`` on ``settings.feast_dir`` whose unknown users read as the defaults."""
    client = FeatureStoreClient(
        settings=FeatureStoreSettings(repo_path=settings.feast_dir, drop_older_writes=drop_older_writes),
        defaults=default_features(),
    )
    client.start()
    return client
