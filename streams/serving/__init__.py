"""The serving API: assignment, features, the variant's policy, and the decision log.

``Recommender`` is the plain logic (no HTTP, no Kafka); ``DecisionLog`` hands decisions and
exposures to Kafka off the request path, within a buffer limit, through a local write-ahead
``Spool`` that survives a SIGKILL; ``LiveConfig`` and
``LiveConfigReader`` hot-reload experiment specs and policy snapshots; ``ServingService``
puts them together and ``build_app`` is the thin aiohttp adapter; ``serve`` runs it all.
``InlineFeatureReader`` and ``CoalescingFeatureReader`` are the two ways a request reads its
features (on the event loop, or in a thread that batches reads); ``ServingMetrics`` is
``GET /metrics``.
"""

from streams.serving.commands import build_service, serve
from streams.serving.decision_log import DecisionLog
from streams.serving.errors import InvalidRequest, ServingError, SpoolError
from streams.serving.features import CoalescingFeatureReader, InlineFeatureReader
from streams.serving.http import build_app
from streams.serving.live_config import LiveConfig, LiveConfigReader
from streams.serving.metrics import Histogram, ServingMetrics
from streams.serving.recommender import FeatureReader, Recommendation, Recommender
from streams.serving.request import DEFAULT_ARMS, RecommendRequest, ServingConfig, parse_request
from streams.serving.service import ServingService
from streams.serving.spool import Spool, SpooledRecord

__all__ = [
    "DEFAULT_ARMS",
    "CoalescingFeatureReader",
    "DecisionLog",
    "FeatureReader",
    "Histogram",
    "InlineFeatureReader",
    "InvalidRequest",
    "LiveConfig",
    "LiveConfigReader",
    "RecommendRequest",
    "Recommendation",
    "Recommender",
    "ServingConfig",
    "ServingError",
    "ServingMetrics",
    "ServingService",
    "Spool",
    "SpoolError",
    "SpooledRecord",
    "build_app",
    "build_service",
    "parse_request",
    "serve",
]
