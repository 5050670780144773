"""The workers' ``/metrics``: their status, as Prometheus families (``infra.metrics``).

A worker computes its status on its event loop (the status timer: counters, per-partition
lag from the consumer) and hands it to ``WorkerMetrics.publish``; the scrape thread of the
``/metrics`` server only reads that dict and the live histograms, so it never touches the
consumer or the event loop's structures while they change.

>>> from infra.metrics import exposition
>>> metrics = WorkerMetrics(lambda status: [counter("x_events", "events", status.get("n", 0))])
>>> metrics.publish({"n": 3})
>>> b"x_events_total 3.0" in exposition(metrics.registry)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from infra.metrics import MetricsServer, counter, gauge, registry, serve_metrics

StatusFamilies = Callable[[Mapping[str, Any]], Iterable[Metric]]


class WorkerMetrics:
    """The newest published status of a worker, served as ``families(status)``."""

    def __init__(self, families: StatusFamilies) -> None:
        self.status: Mapping[str, Any] = {}
        self.registry = registry(lambda: families(self.status))
        self.server: MetricsServer | None = None

    def publish(self, status: Mapping[str, Any]) -> None:
        self.status = status  # one assignment: a scrape sees the old status or the new one

    def start(self, port: int) -> int:
        """Serve ``/metrics`` on loopback ``port`` (a free one if it is taken, or for 0); the port."""
        if self.server is None:
            self.server = serve_metrics(self.registry, port=port)
        return self.server.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def lag_family(name: str, help_text: str, lags: Mapping[str, int]) -> GaugeMetricFamily:
    """``lags`` keyed ``"topic:partition"`` (the status file's form) as a gauge per topic and partition."""
    family = GaugeMetricFamily(name, help_text, labels=["topic", "partition"])
    for key, lag in sorted(lags.items()):
        topic, _, partition = key.rpartition(":")
        family.add_metric([topic, partition], float(lag))
    return family


def features_families(status: Mapping[str, Any], freshness: Any) -> list[Metric]:
    """The features worker's figures; ``freshness`` is its ``FreshnessTracker`` (live)."""
    outcomes = {key: status.get(field, 0) for key, field in (
        ("processed", "processed"), ("accepted", "accepted"), ("duplicate", "duplicates"), ("late", "late"),
        ("invalid", "invalid"))}
    return [
        counter("tandem_features_events", "events read, by what they did to the user's state", outcomes, "outcome"),
        counter("tandem_features_dead_letters", "records sent to the dead-letter topic",
                status.get("dead_lettered", 0)),
        counter("tandem_features_rows_written", "feature rows written to the online store",
                status.get("rows_written", 0)),
        counter("tandem_features_records_flushed", "events whose rows are in the online store",
                status.get("records_flushed", 0)),
        counter("tandem_features_flushes", "feature-store writes", status.get("flushes", 0)),
        counter("tandem_features_write_errors", "feature-store writes that failed (retried)",
                status.get("write_errors", 0)),
        counter("tandem_features_table_writes", "user states written to the Faust table",
                status.get("table_writes", 0)),
        gauge("tandem_features_waiting", "events read and not acknowledged yet", status.get("waiting", 0)),
        lag_family("tandem_features_consumer_lag", "records of the events topic not read yet",
                   status.get("lag_by_partition", {})),
        freshness.histogram.family("tandem_features_freshness_seconds",
                                   "event published -> its row readable in the online store"),
    ]


def learner_families(status: Mapping[str, Any]) -> list[Metric]:
    """The learner's figures."""
    stats = status.get("stats", {})
    return [
        counter("tandem_learner_records", "records offered to the learner, by outcome", status.get("offered", {}),
                "outcome"),
        counter("tandem_learner_updates", "policy updates (decisions joined with their rewards)",
                stats.get("updates", 0)),
        counter("tandem_learner_windows_closed", "reward windows closed by the watermark",
                status.get("windows_closed", 0)),
        counter("tandem_learner_late", "records dropped below the watermark", stats.get("late", 0)),
        counter("tandem_learner_dead_letters", "records sent to the dead-letter topic",
                status.get("dead_lettered", 0)),
        counter("tandem_learner_checkpoints", "checkpoints stored", status.get("checkpoints", 0)),
        counter("tandem_learner_checkpoint_failures", "checkpoints that could not be stored",
                status.get("checkpoint_failures", 0)),
        gauge("tandem_learner_open_decisions", "decisions waiting for their reward window to close",
              stats.get("open_decisions", 0)),
        gauge("tandem_learner_waiting", "records read and not in a stored checkpoint yet", status.get("waiting", 0)),
        gauge("tandem_learner_policy_version", "updates applied to each policy", stats.get("versions", {}),
              "policy"),
        lag_family("tandem_learner_consumer_lag", "records of the decisions and events topics not read yet",
                   status.get("lag_by_partition", {})),
    ]
