"""The serving process's parts put together: feature reads, the recommender, the log.

``ServingService`` is what the HTTP adapter calls; it knows nothing of HTTP. Feast reads
run on the event loop when the store's reads are in-process (SQLite), else off it,
coalesced and bounded by ``feature_timeout_s`` (``streams.serving.features``); a read
that fails or times out serves the default features, counted as a fallback (the
decision's ``context`` is what was actually used). There is no feature cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from infra.kafka.topics import DECISIONS, EXPOSURES, STICKY_ASSIGNMENTS
from infra.metrics import counter, exposition, gauge, registry
from streams.events import MAX_TS_MS, MIN_TS_MS
from streams.serving.decision_log import DecisionLog
from streams.serving.features import CoalescingFeatureReader, InlineFeatureReader
from streams.serving.live_config import LiveConfig, LiveConfigReader
from streams.serving.metrics import ServingMetrics
from streams.serving.recommender import FeatureReader, Recommender
from streams.serving.request import RecommendRequest, ServingConfig

logger = logging.getLogger(__name__)


def _feature_reads(features: FeatureReader, config: ServingConfig) -> InlineFeatureReader | CoalescingFeatureReader:
    inline = config.feature_reads == "inline" or (
        config.feature_reads == "auto" and getattr(features, "reads_in_process", False))
    if inline:
        return InlineFeatureReader(features)
    return CoalescingFeatureReader(features, timeout_s=config.feature_timeout_s, max_waiting=config.max_feature_reads)


class ServingService:
    def __init__(
        self,
        *,
        features: FeatureReader,
        live: LiveConfig,
        log: DecisionLog,
        config: ServingConfig = ServingConfig(),  # noqa: B008 - frozen, shared safely
        reader: LiveConfigReader | None = None,
    ) -> None:
        self.config = config
        self.features = features
        self.live = live
        self.log = log
        self.reader = reader
        self.recommender = Recommender(live=live, arms=config.arms, default_policy=config.default_policy)
        self.metrics = ServingMetrics()
        self.metrics_registry = registry(self.metrics_families)
        self.feature_reads = _feature_reads(features, config)
        self.started_monotonic = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, wait_ready: bool = True) -> ServingService:
        """Start the log and the live-config reader; wait (bounded) until the config is read."""
        self._warm_up()
        self.log.start()
        if self.reader is not None:
            self.reader.start()
            if wait_ready and not self.reader.ready.wait(self.config.ready_timeout_s):
                logger.warning("live config not read to its end within %.0f s: serving with what is loaded",
                               self.config.ready_timeout_s)
        return self

    def _warm_up(self) -> None:
        """The first Feast read loads the registry (~0.1 s): pay it before the first request does."""
        began = time.perf_counter()
        try:
            self.features.read(["__warm_up__"])
        except Exception as exc:  # noqa: BLE001 - requests will fall back to the defaults
            logger.error("feature store warm-up read failed: %s: %s", type(exc).__name__, exc)
        logger.info("feature store warm-up read: %.1f ms", (time.perf_counter() - began) * 1e3)

    def close(self, timeout_s: float = 10.0) -> None:
        if self.reader is not None:
            self.reader.close()
        self.log.close(timeout_s)
        self.feature_reads.close()

    # -- the request path --------------------------------------------------------------

    async def read_features(self, user_id: str) -> dict[str, int | float]:
        """The user's features from the store, or the defaults (counted) when it is slow, busy or failing."""
        return await self.feature_reads.get(user_id)

    async def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        features = await self.read_features(request.user_id)
        ts = request.ts if request.ts is not None else min(max(int(time.time() * 1000), MIN_TS_MS), MAX_TS_MS - 1)
        out = self.recommender.recommend(request.user_id, features=features, ts_ms=ts, candidates=request.candidates,
                                         surface=request.surface)
        self.log.offer_all([(DECISIONS.name, out.decision), *((EXPOSURES.name, e) for e in out.exposures),
                            *((STICKY_ASSIGNMENTS.name, a) for a in out.sticky)])
        return out.response()

    # -- health and metrics ------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        log, reader = self.log, self.reader
        now = time.monotonic()
        caught_up = reader is None or reader.ready.is_set()
        broker_ok = log.healthy()
        return {
            "status": "ok" if broker_ok and caught_up else "degraded",
            "uptime_s": round(now - self.started_monotonic, 3),
            "decision_log": {
                "broker_ok": broker_ok,
                "producer_ready": log.producer_ready,
                "pending": log.pending,
                "max_pending": log.max_pending,
                "offered": dict(log.offered),  # accepted into the buffer (overflowed ones are not)
                "acknowledged": dict(log.acknowledged),
                "failed": dict(log.failed),
                "overflowed": dict(log.overflowed),
                "replayed": dict(log.replayed),  # left in the spool by the previous process, sent again
                "spool_segments": None if log.spool is None else log.spool.segments,
                "last_ack_age_s": None if log.last_ack_monotonic is None else round(now - log.last_ack_monotonic, 3),
                "last_error": log.last_error,
            },
            "live_config": {
                "caught_up": caught_up,
                "reloads": dict(self.live.reloads),
                "reload_errors": dict(self.live.reload_errors),
                "last_error": None if reader is None else reader.last_error,
            },
            "experiments": {
                spec.id: {"surface": spec.surface, "kind": spec.kind,
                          "variants": {v.name: sorted(v.params) for v in spec.variants}}
                for spec in self.live.specs()
            },
            "parameter_conflicts": dict(self.recommender.conflicts),
            "policies": self.live.versions(),
            "default_policy": self.config.default_policy,
            "arms": list(self.config.arms),
            "feature_fallbacks": dict(self.feature_reads.fallbacks),
        }

    def metrics_text(self) -> str:
        """Every figure below in the Prometheus text format (``infra.metrics.CONTENT_TYPE``)."""
        return exposition(self.metrics_registry).decode("utf-8")

    def metrics_families(self) -> list[Metric]:
        m, log, live, reads = self.metrics, self.log, self.live, self.feature_reads
        by_route = CounterMetricFamily("tandem_serving_requests", "HTTP requests by route and status",
                                       labels=["route", "status"])
        for (route, status), count in sorted(dict(m.requests).items()):
            by_route.add_metric([route, str(status)], count)
        per_topic = {kind: 0 for kind in log.topics}
        return [
            by_route,
            m.latency.family("tandem_serving_recommend_latency_seconds", "POST /recommend latency"),
            reads.latency.family("tandem_serving_feature_read_seconds", "wait for the user's features (Feast read)"),
            reads.batch_sizes.family("tandem_serving_feature_read_batch_users", "users per Feast read"),
            counter("tandem_serving_feature_fallbacks", "requests served with default features",
                    {k: reads.fallbacks.get(k, 0) for k in ("timeout", "busy", "error")}, "reason"),
            counter("tandem_serving_records_logged", "records acknowledged by the broker",
                    {**per_topic, **log.acknowledged}, "topic"),
            counter("tandem_serving_records_failed", "records whose delivery failed",
                    {**per_topic, **log.failed}, "topic"),
            counter("tandem_serving_records_overflowed", "records refused: the log's buffer was full",
                    {**per_topic, **log.overflowed}, "topic"),
            counter("tandem_serving_records_replayed", "records the previous process left in the spool, sent again",
                    {**per_topic, **log.replayed}, "topic"),
            gauge("tandem_serving_spool_segments", "spool segment files held",
                  0 if log.spool is None else log.spool.segments),
            gauge("tandem_serving_records_pending", "records queued or unacknowledged", log.pending),
            gauge("tandem_serving_records_pending_limit", "the log's buffer limit", log.max_pending),
            gauge("tandem_serving_policy_version", "version of each policy served", live.versions(), "policy"),
            counter("tandem_serving_reloads", "live config records applied",
                    {k: live.reloads.get(k, 0) for k in ("experiments", "models")}, "topic"),
            counter("tandem_serving_reload_errors", "live config records rejected",
                    {k: live.reload_errors.get(k, 0) for k in ("experiments", "models")}, "topic"),
            counter("tandem_serving_unresolved_policy", "variants served the default policy instead",
                    self.recommender.unresolved, "policy"),
            gauge("tandem_serving_experiments", "experiment specs loaded", len(live.specs())),
            counter("tandem_serving_parameter_conflicts", "parameters another experiment had already set",
                    self.recommender.conflicts, "experiment"),
            gauge("tandem_serving_sticky_assignments", "bandit experiments' users remembered", len(live.sticky)),
        ]
