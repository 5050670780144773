"""The features worker's consumer waits 10 ms per fetch on the embedded broker; others keep theirs."""

from __future__ import annotations

from pathlib import Path

from infra.kafka.config import EMBEDDED_FETCH_MAX_WAIT_MS
from infra.settings import Settings
from streams.worker.app import new_app
from streams.worker.features.app import FETCH_WAIT_MS


def test_the_fetch_wait_is_the_features_workers_on_the_embedded_broker_only(tmp_path: Path) -> None:
    embedded = Settings(state_dir=tmp_path, bootstrap_servers="127.0.0.1:9")
    external = Settings(state_dir=tmp_path, bootstrap_servers="127.0.0.1:9", profile="external")
    assert embedded.embedded and not external.embedded
    assert new_app(embedded, "a", fetch_wait_ms=FETCH_WAIT_MS).fetch_max_wait_ms == FETCH_WAIT_MS == 10
    assert new_app(embedded, "b").fetch_max_wait_ms == EMBEDDED_FETCH_MAX_WAIT_MS
    assert new_app(external, "c", fetch_wait_ms=FETCH_WAIT_MS).fetch_max_wait_ms is None  # the client's default
