"""The topic table of DESIGN.md as data, applied create-if-missing.

The embedded broker ignores topic configs (no compaction, no retention) and
cannot add partitions, so provisioning only creates what is missing and reports
what differs; readers of "compacted" topics keep the newest record per key
themselves.
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
class TopicSpec:
    name: str
    key: str
    value: str
    compacted: bool = False
    retention_ms: int | None = None
    partitions: int | None = None  # None: the TANDEM_PARTITIONS setting

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("events", "user_id", "listening event", retention_ms=8 * WEEK_MS),
    TopicSpec("decisions", "user_id", "decision with propensity", retention_ms=8 * WEEK_MS),
    TopicSpec("exposures", "user_id", "exposure", retention_ms=26 * WEEK_MS),
    TopicSpec("models", "policy name", "policy snapshot (JSON)", compacted=True, partitions=1),
    TopicSpec("learner-checkpoints", "learner app id", "learner state + offsets (JSON)", compacted=True, partitions=1),
    TopicSpec("experiments", "experiment id", "experiment spec", compacted=True, partitions=1),
    TopicSpec("experiment-metrics", "experiment/variant/metric", "sufficient statistics", compacted=True),
    TopicSpec("dead-letters", "source topic", "dead-letter envelope", retention_ms=4 * WEEK_MS),
)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def apply_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> ApplyReport:
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
        missing = [spec for spec in specs if settings.topic(spec.name) not in present]
        for spec in missing:
            topic = settings.topic(spec.name)
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
        existing = [spec for spec in specs if settings.topic(spec.name) in present]
        if existing:
            described = {
                item.get("name", item.get("topic")): len(item["partitions"])  # key differs by kafka-python version
                for item in admin.describe_topics([settings.topic(spec.name) for spec in existing])
            }
            for spec in existing:
                topic = settings.topic(spec.name)
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
