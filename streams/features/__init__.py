"""Per-user listening features in event time: pure logic, no Faust, no Feast."""

from streams.features.config import (
    DEFAULT_CONFIG,
    WINDOWS,
    FeatureConfig,
    default_features,
    feature_names,
    normalize_genre,
)
from streams.features.errors import FeatureError, InvalidState, LateEvent
from streams.features.state import ApplyResult, Outcome, UserFeatureState
from streams.features.windows import compute_features

__all__ = [
    "DEFAULT_CONFIG",
    "WINDOWS",
    "ApplyResult",
    "FeatureConfig",
    "FeatureError",
    "InvalidState",
    "LateEvent",
    "Outcome",
    "UserFeatureState",
    "compute_features",
    "default_features",
    "feature_names",
    "normalize_genre",
]
