"""Every topic of tandem, defined once: name (before the prefix), key, value schema, retention.

Code refers to a topic by its object (``settings.topic(EVENTS)``), never by a string. The
value schema is named by the dotted path of its pydantic model (the models live in the
stacks, above this floor; ``tests/unit/infra/kafka/test_topics.py`` resolves each one).

The embedded broker ignores topic configs (no compaction, no retention) and cannot add
partitions, so provisioning only creates what is missing and reports what differs;
readers of "compacted" topics keep the newest record per key themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from infra.errors import ProvisioningError
from infra.kafka.config import admin_config
from infra.settings import Settings

logger = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """One topic: ``name`` after ``settings.topic_prefix``, what its key is, the dotted path of
    its value's schema, and its retention (None: kept forever, or compacted)."""

    name: str
    key: str
    value_schema: str
    compacted: bool = False
    retention_ms: int | None = None
    partitions: int | None = None  # None: the TANDEM_PARTITIONS setting

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


EVENTS = Topic("events", "user_id", "streams.events.ListeningEvent", retention_ms=8 * WEEK_MS)
DECISIONS = Topic("decisions", "user_id", "streams.events.Decision", retention_ms=8 * WEEK_MS)
EXPOSURES = Topic("exposures", "user_id", "streams.events.Exposure", retention_ms=26 * WEEK_MS)
MODELS = Topic("models", "policy name", "streams.events.ModelSnapshot", compacted=True, partitions=1)
LEARNER_CHECKPOINTS = Topic("learner-checkpoints", "learner app id", "streams.events.LearnerCheckpoint",
                            compacted=True, partitions=1)
EXPERIMENTS = Topic("experiments", "experiment id", "experiments.spec.ExperimentSpec", compacted=True, partitions=1)
EXPERIMENT_METRICS = Topic("experiment-metrics", "experiment/variant/metric",
                           "experiments.aggregation.stats.metric_record", compacted=True)
#: Append-only and kept forever: a decision is never rewritten (``experiments.lifecycle.DecisionRecord``).
EXPERIMENT_DECISIONS = Topic("experiment-decisions", "experiment id", "experiments.lifecycle.DecisionRecord",
                             partitions=1)
DEAD_LETTERS = Topic("dead-letters", "source topic", "streams.events.DeadLetter", retention_ms=4 * WEEK_MS)
STICKY_ASSIGNMENTS = Topic("sticky-assignments", "experiment/user_id", "streams.events.StickyAssignment",
                           compacted=True)

#: One record, the log's identity: consumers keep it with their state (``infra.kafka.incarnation``).
INCARNATION = Topic("incarnation", "the constant key incarnation", "infra.kafka.incarnation.marker_record",
                    compacted=True, partitions=1)

TOPICS: tuple[Topic, ...] = (
    EVENTS, DECISIONS, EXPOSURES, MODELS, LEARNER_CHECKPOINTS, EXPERIMENTS, EXPERIMENT_METRICS, DEAD_LETTERS,
    STICKY_ASSIGNMENTS,
    EXPERIMENT_DECISIONS,
    INCARNATION,
)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def apply_topics(settings: Settings, specs: tuple[Topic, ...] = TOPICS) -> ApplyReport:
    """Create every missing topic; idempotent. Partition counts that differ are reported."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    report = ApplyReport()
    try:
        admin = KafkaAdminClient(**admin_config(settings))
    except KafkaError as exc:
        raise ProvisioningError(f"cannot reach {settings.resolved_bootstrap()}: {exc}") from exc
    try:
        present = set(admin.list_topics())
        missing = [spec for spec in specs if settings.topic(spec) not in present]
        for spec in missing:
            topic = settings.topic(spec)
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            spec.partitions or settings.partitions,
                            settings.replication_factor,
                            topic_configs=spec.configs(),
                        )
                    ]
                )
                report.created.append(topic)
            except TopicAlreadyExistsError:  # created concurrently by another process
                report.existing.append(topic)
        existing = [spec for spec in specs if settings.topic(spec) in present]
        if existing:
            described = {
                item.get("name", item.get("topic")): len(item["partitions"])  # key differs by kafka-python version
                for item in admin.describe_topics([settings.topic(spec) for spec in existing])
            }
            for spec in existing:
                topic = settings.topic(spec)
                report.existing.append(topic)
                wanted = spec.partitions or settings.partitions
                if described.get(topic) != wanted:
                    report.mismatched.append(f"{topic}: {described.get(topic)} partitions, spec says {wanted}")
    except KafkaError as exc:
        raise ProvisioningError(f"topic provisioning failed: {exc}") from exc
    finally:
        admin.close()
    for problem in report.mismatched:
        logger.warning("topic differs from its spec: %s", problem)
    return report
