"""Client settings for every Kafka client tandem uses, in one place.

The embedded broker deviates from Kafka in ways measured in docs/architecture.md; what
follows from them for clients is decided here and nowhere else:

- it holds a JoinGroup for half the session timeout, so sessions are 6 s with a
  1 s heartbeat (joins and rebalances then take ~3 s instead of ~23 s);
- its LATEST offsets are wrong, so consumers always start from ``earliest`` and
  measure lag with the fetch high-watermark;
- a fetch with no new data is held for about the consumer's ``fetch_max_wait_ms``
  even when records arrive meanwhile (kafka-python, 2,000 records/s offered:
  publish-to-poll p50/p99 24/40 ms with a 50 ms wait, 36/65 ms with 100 ms,
  142/275 ms with the 500 ms default, 396/792 ms with Faust's fixed 1,500 ms), so
  every consumer waits at most 50 ms;
- aiokafka's idempotent producer cannot start against it, so Faust's producer
  stays non-idempotent; kafka-python's idempotence is left off too, because every
  consumer that changes state is idempotent on record ids anyway.
"""

from __future__ import annotations

from typing import Any

from infra.settings import Settings

EMBEDDED_SESSION_TIMEOUT_MS = 6_000
EMBEDDED_HEARTBEAT_INTERVAL_MS = 1_000
EMBEDDED_FETCH_MAX_WAIT_MS = 50


def _security(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.sasl_mechanism:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, option)
        if value is not None:
            config[option] = str(value)
    return config


def _group_timing(settings: Settings) -> dict[str, Any]:
    if settings.embedded:
        return {
            "session_timeout_ms": EMBEDDED_SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": EMBEDDED_HEARTBEAT_INTERVAL_MS,
        }
    return {}


def fetch_max_wait_ms(settings: Settings) -> int | None:
    """How long a consumer's fetch may wait for data; None leaves the client's default.

    A real Kafka answers a waiting fetch as soon as data arrives, so the wait only
    matters when idle; the embedded broker holds it (see the module docstring)."""
    return EMBEDDED_FETCH_MAX_WAIT_MS if settings.embedded else None


def common_config(settings: Settings) -> dict[str, Any]:
    """Options every kafka-python client (producer, consumer, admin) takes."""
    return {"bootstrap_servers": settings.resolved_bootstrap().split(","), **_security(settings)}


def consumer_config(settings: Settings, *, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    """A kafka-python ``KafkaConsumer``: bytes in, earliest start, explicit commits."""
    config = {
        **common_config(settings),
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        **_group_timing(settings),
    }
    wait_ms = fetch_max_wait_ms(settings)
    if wait_ms is not None:
        config["fetch_max_wait_ms"] = wait_ms
    config.update(overrides)
    return config


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A kafka-python ``KafkaProducer``: durable acks, batching, bounded buffer."""
    config = {
        **common_config(settings),
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "max_request_size": 2 * 1024 * 1024,  # dead letters may carry an oversized rejected value
        "retries": 5,
        "max_in_flight_requests_per_connection": 1,  # retries keep per-key order
    }
    config.update(overrides)
    return config


#: librdkafka's names for the security settings (``_security`` gives kafka-python's).
_LIBRDKAFKA_SSL = {"ssl_cafile": "ssl.ca.location", "ssl_certfile": "ssl.certificate.location",
                   "ssl_keyfile": "ssl.key.location"}


def librdkafka_producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) ``Producer``, placing keys as kafka-python does.

    ``murmur2_random`` is the Java client's partitioner, which kafka-python's default
    partitioner also is; librdkafka's own default (CRC32) would put a user's records on
    other partitions than their events'. Same durability as ``producer_config``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.resolved_bootstrap(),
        "security.protocol": settings.security_protocol.lower(),
        "partitioner": "murmur2_random",
        "acks": "all",
        "linger.ms": 5,
        "max.in.flight.requests.per.connection": 1,  # retries keep per-key order
        "enable.idempotence": False,  # as for kafka-python: consumers are idempotent on record ids
    }
    if settings.sasl_mechanism:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    for option, name in _LIBRDKAFKA_SSL.items():
        value = getattr(settings, option)
        if value is not None:
            config[name] = str(value)
    config.update(overrides)
    return config


def admin_config(settings: Settings) -> dict[str, Any]:
    return {**common_config(settings), "request_timeout_ms": 15_000}


def faust_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` (aiokafka underneath)."""
    import ssl

    import faust

    bootstrap = settings.resolved_bootstrap()
    config: dict[str, Any] = {
        "broker": [f"kafka://{address}" for address in bootstrap.split(",")],
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "web_enabled": False,
        "web_bind": "127.0.0.1",
    }
    if settings.embedded:
        config["broker_session_timeout"] = EMBEDDED_SESSION_TIMEOUT_MS / 1000
        config["broker_heartbeat_interval"] = EMBEDDED_HEARTBEAT_INTERVAL_MS / 1000
    if settings.security_protocol != "PLAINTEXT":
        context = None
        if settings.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(
                cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
            )
            if settings.ssl_certfile:
                context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile or ""))
        if settings.sasl_mechanism:
            config["broker_credentials"] = faust.SASLCredentials(
                username=settings.sasl_username,
                password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
                mechanism=settings.sasl_mechanism,
                ssl_context=context,
            )
        elif context is not None:
            config["broker_credentials"] = faust.SSLCredentials(context)
    return config
