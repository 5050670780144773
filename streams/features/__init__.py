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
"""

from streams.features.config import (
    DEFAULT_CONFIG,
    WINDOWS,
    FeatureConfig,
    default_features,
    feature_names,
    normalize_genre,
)
from streams.features.errors import FeatureError, InvalidState, LateEvent
from streams.features.state import ApplyOutcome, ApplyResult, UserFeatureState
from streams.features.windows import compute_features

__all__ = [
    "DEFAULT_CONFIG",
    "WINDOWS",
    "ApplyResult",
    "FeatureConfig",
    "FeatureError",
    "InvalidState",
    "LateEvent",
    "ApplyOutcome",
    "UserFeatureState",
    "compute_features",
    "default_features",
    "feature_names",
    "normalize_genre",
]
