"""The Feast repository (defined in code) and the thin read/write layer ``streams`` uses."""

from feature_store.client import FeatureStoreClient, Freshness, WriteReport
from feature_store.definitions import (
    ENTITY,
    FEATURE_SERVICE,
    FEATURE_VIEW,
    JOIN_KEY,
    PUSH_SOURCE,
    TIMESTAMP,
)
from feature_store.errors import FeatureStoreConfigError, FeatureStoreError, InvalidFeatureRow
from feature_store.settings import FeatureStoreSettings

__all__ = [
    "ENTITY",
    "FEATURE_SERVICE",
    "FEATURE_VIEW",
    "JOIN_KEY",
    "PUSH_SOURCE",
    "TIMESTAMP",
    "FeatureStoreClient",
    "FeatureStoreConfigError",
    "FeatureStoreError",
    "FeatureStoreSettings",
    "Freshness",
    "InvalidFeatureRow",
    "WriteReport",
]
