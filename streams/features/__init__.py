"""Per-user listening features in event time: pure logic, no Faust, no Feast.

How a stream adapter uses it (one state per user, keyed by user_id)::

    state = UserFeatureState.from_dict(table[user]) if user in table else UserFeatureState(user)
    result = state.apply(event)              # ~3 µs; never raises for late or duplicate events
    if result.outcome is ApplyOutcome.LATE:
        dead_letter(..., error=result.error(), stage="features")
    table[user] = state.to_dict()            # JSON-native, O(1) here; its JSON is O(events kept)
    ...
    rows = [state.feature_row() for each user touched since the last flush]
    feature_store_client.write_rows(rows)    # batched, off the event loop

``to_dict`` holds a week of the user's events, so serializing it on every event costs
~0.5 µs per event kept: keep live states in memory and persist touched ones per flush.

``open_online_store`` (``streams.features.online``) opens the Feast online store with these
defaults for readers; it is imported on first use (the feature store pulls in pandas and pyarrow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports
from streams.features.config import (
    DEFAULT_ALLOWED_LATENESS_MS,
    DEFAULT_CONFIG,
    RETENTION_MS,
    WINDOWS,
    FeatureConfig,
    default_features,
    feature_names,
    normalize_genre,
)
from streams.features.errors import FeatureError, InvalidState, LateEvent
from streams.features.state import ApplyOutcome, ApplyResult, UserFeatureState
from streams.features.windows import compute_features

if TYPE_CHECKING:
    from streams.features.online import open_online_store

__all__ = [
    "DEFAULT_ALLOWED_LATENESS_MS",
    "DEFAULT_CONFIG",
    "RETENTION_MS",
    "WINDOWS",
    "ApplyOutcome",
    "ApplyResult",
    "FeatureConfig",
    "FeatureError",
    "InvalidState",
    "LateEvent",
    "UserFeatureState",
    "compute_features",
    "default_features",
    "feature_names",
    "normalize_genre",
    "open_online_store",
]

#: Exports imported on first use, and their modules.
_LAZY = {"open_online_store": "streams.features.online"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
