"""The registry is replaced whole: a process reading it while another applies never sees it torn."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from feature_store import FeatureStoreClient, FeatureStoreSettings
from feature_store.client import REGISTRY_STORE_TYPE
from feature_store.definitions import FEATURE_VIEW
from streams.features import default_features


def test_a_write_leaves_the_old_registry_whole_until_the_new_one_replaces_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    from feast.infra.registry.registry import get_registry_store_class_from_type
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from feast.repo_config import RegistryConfig

    cls = get_registry_store_class_from_type(REGISTRY_STORE_TYPE)  # as Feast resolves it
    path = tmp_path / "repo" / "registry.db"
    store = cls(RegistryConfig(path=str(path), registry_store_type=REGISTRY_STORE_TYPE), tmp_path)
    first = RegistryProto()
    first.project_metadata.add(project="first")
    store.update_registry_proto(first)

    seen_at_replace: list[list[str]] = []
    replace = os.replace

    def replacing(source: str, target: Path) -> None:
        # the moment before the rename: what a reader of the registry would parse
        seen_at_replace.append([m.project for m in store.get_registry_proto().project_metadata])
        replace(source, target)

    monkeypatch.setattr(os, "replace", replacing)
    second = RegistryProto()
    second.project_metadata.add(project="second")
    store.update_registry_proto(second)
    assert seen_at_replace == [["first"]]
    assert [m.project for m in store.get_registry_proto().project_metadata] == ["second"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["registry.db"]  # no temporary left


def test_every_client_applies_through_it(tmp_path: Path):
    settings = FeatureStoreSettings(repo_path=tmp_path / "repo", project=f"t{uuid.uuid4().hex[:8]}")
    with FeatureStoreClient(settings=settings, defaults=default_features()) as client:
        store = client._store
        assert type(store.registry._registry_store).__name__ == "AtomicFileRegistryStore"
        assert store.get_feature_view(FEATURE_VIEW).name == FEATURE_VIEW
