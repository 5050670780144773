"""The Feast repository, in code: entity, sources, feature view and feature service.

The schema comes from a mapping of feature name -> default value; an ``int`` default makes an
Int64 feature and a ``float`` default a Float64 one (``streams.features.default_features``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feature_store.errors import FeatureStoreConfigError

ENTITY = "user"
JOIN_KEY = "user_id"
TIMESTAMP = "event_timestamp"
FEATURE_VIEW = "user_listening_features"
PUSH_SOURCE = "user_listening_features_push"
BATCH_SOURCE = "user_listening_features_batch"
FEATURE_SERVICE = "serving_features"
RESERVED = frozenset({JOIN_KEY, TIMESTAMP, "date"})


@dataclass(frozen=True)
class Definitions:
    entity: Any  # feast.Entity (feast is imported only when the store starts: ~4 s)
    batch_source: Any  # feast.FileSource
    push_source: Any  # feast.PushSource
    feature_view: Any  # feast.FeatureView
    feature_service: Any  # feast.FeatureService

    def all(self) -> list:
        return [self.entity, self.batch_source, self.push_source, self.feature_view, self.feature_service]


def check_schema(defaults: Mapping[str, int | float]) -> None:
    if not defaults:
        raise FeatureStoreConfigError("defaults: at least one feature is needed")
    for name, value in defaults.items():
        if name in RESERVED or not name.isidentifier():
            raise FeatureStoreConfigError(f"defaults: {name!r} is not a usable feature name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FeatureStoreConfigError(
                f"defaults: {name}: the default must be an int or a float, got {type(value).__name__}"
            )


def offline_path(repo_path: Path) -> Path:
    return repo_path / "offline" / FEATURE_VIEW


def build_definitions(
    defaults: Mapping[str, int | float], *, repo_path: Path, ttl: timedelta
) -> Definitions:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64
    from feast.value_type import ValueType

    check_schema(defaults)
    entity = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.STRING,
                    description="A listener.")
    batch = FileSource(
        name=BATCH_SOURCE,
        path=str(offline_path(repo_path)),
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP,
        description="Every pushed feature row, as Parquet partitioned by day (date=YYYY-MM-DD).",
    )
    push = PushSource(name=PUSH_SOURCE, batch_source=batch)
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[entity],
        ttl=ttl,
        schema=[
            Field(name=name, dtype=Float64 if isinstance(value, float) else Int64)
            for name, value in defaults.items()
        ],
        source=push,
        online=True,
        description="Per-user listening features over 1 h / 24 h / 7 d of event time.",
    )
    service = FeatureService(name=FEATURE_SERVICE, features=[view])
    return Definitions(entity, batch, push, view, service)
