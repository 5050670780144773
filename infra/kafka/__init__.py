"""The ground floor's Kafka layer: client options, topics, producers, a topic reader, the embedded broker.

- ``infra.kafka.config``: the options of every client (kafka-python, aiokafka through Faust,
  librdkafka, admin), derived from ``infra.settings.Settings`` in one place;
- ``infra.kafka.topics``: every topic (name, key, value schema, retention) and ``apply_topics``;
- ``infra.kafka.producer``: ``KafkaPublisher``, a kafka-python producer that raises on a lost record;
- ``infra.kafka.librdkafka``: ``LibrdkafkaProducer``, the serving log's producer;
- ``infra.kafka.incarnation``: which log a consumer's state was built from, and the guard;
- ``infra.kafka.topic_reader``: a whole topic up to its end, and reader-side compaction;
- ``infra.kafka.broker``: the embedded broker (Tansu), in process or as a daemon.

No client library is imported before it is used, and the names below are imported on first
use: importing one module of this package costs that module alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from infra.kafka.broker import EmbeddedBroker, free_port, pid_alive, stop_pid
    from infra.kafka.config import (
        admin_config,
        consumer_config,
        faust_config,
        fetch_max_wait_ms,
        librdkafka_producer_config,
        producer_config,
    )
    from infra.kafka.incarnation import (
        Incarnation,
        check_incarnation,
        check_offsets,
        current_incarnation,
        guard_state_dir,
    )
    from infra.kafka.librdkafka import LibrdkafkaProducer
    from infra.kafka.producer import DeliveryStats, KafkaPublisher
    from infra.kafka.topic_reader import newest_per_key, read_topic
    from infra.kafka.topics import (
        DEAD_LETTERS,
        DECISIONS,
        EVENTS,
        EXPERIMENT_DECISIONS,
        EXPERIMENT_METRICS,
        EXPERIMENTS,
        EXPOSURES,
        INCARNATION,
        LEARNER_CHECKPOINTS,
        MODELS,
        STICKY_ASSIGNMENTS,
        TOPICS,
        ApplyReport,
        Topic,
        apply_topics,
    )

__all__ = [
    "DEAD_LETTERS",
    "DECISIONS",
    "EVENTS",
    "EXPERIMENTS",
    "EXPERIMENT_DECISIONS",
    "EXPERIMENT_METRICS",
    "EXPOSURES",
    "INCARNATION",
    "LEARNER_CHECKPOINTS",
    "MODELS",
    "STICKY_ASSIGNMENTS",
    "TOPICS",
    "ApplyReport",
    "DeliveryStats",
    "EmbeddedBroker",
    "Incarnation",
    "KafkaPublisher",
    "LibrdkafkaProducer",
    "Topic",
    "admin_config",
    "apply_topics",
    "check_incarnation",
    "check_offsets",
    "consumer_config",
    "current_incarnation",
    "faust_config",
    "fetch_max_wait_ms",
    "free_port",
    "guard_state_dir",
    "librdkafka_producer_config",
    "newest_per_key",
    "pid_alive",
    "producer_config",
    "read_topic",
    "stop_pid",
]

#: Exports imported on first use, and their modules.
_LAZY = {
    **dict.fromkeys(("EmbeddedBroker", "free_port", "pid_alive", "stop_pid"), "infra.kafka.broker"),
    "LibrdkafkaProducer": "infra.kafka.librdkafka",
    **dict.fromkeys(
        ("Incarnation", "check_incarnation", "check_offsets", "current_incarnation", "guard_state_dir"),
        "infra.kafka.incarnation",
    ),
    **dict.fromkeys(("DeliveryStats", "KafkaPublisher"), "infra.kafka.producer"),
    **dict.fromkeys(
        ("admin_config", "consumer_config", "faust_config", "fetch_max_wait_ms", "librdkafka_producer_config",
         "producer_config"),
        "infra.kafka.config",
    ),
    **dict.fromkeys(("newest_per_key", "read_topic"), "infra.kafka.topic_reader"),
    **dict.fromkeys(
        ("DEAD_LETTERS", "DECISIONS", "EVENTS", "EXPERIMENTS", "EXPERIMENT_DECISIONS", "EXPERIMENT_METRICS",
         "EXPOSURES", "INCARNATION", "LEARNER_CHECKPOINTS", "MODELS", "STICKY_ASSIGNMENTS", "TOPICS", "ApplyReport",
         "Topic", "apply_topics"),
        "infra.kafka.topics",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
