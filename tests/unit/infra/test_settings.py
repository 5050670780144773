"""Settings: read from TANDEM_* variables, frozen, and precise about what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.errors import SettingsError
from infra.kafka.config import consumer_config, librdkafka_producer_config, producer_config
from infra.kafka.topics import EVENTS
from infra.settings import load_settings


def test_defaults_describe_the_embedded_profile() -> None:
    settings = load_settings({})
    assert settings.profile == "embedded"
    assert settings.topic(EVENTS) == "tandem.events"
    assert settings.feast_dir == settings.state_dir / "feast"


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValidationError):
        settings.partitions = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TANDEM_PARTITIONS": "0"}, "TANDEM_PARTITIONS: Input should be greater than or equal to 1"),
        ({"TANDEM_PROFILE": "cloud"}, "TANDEM_PROFILE: Input should be 'embedded' or 'external'"),
        ({"TANDEM_PROFILE": "external"}, "TANDEM_BOOTSTRAP_SERVERS: required with TANDEM_PROFILE=external"),
        ({"TANDEM_TOPIC_PREFIX": "bad prefix"}, "TANDEM_TOPIC_PREFIX: String should match pattern"),
        ({"TANDEM_SECURITY_PROTOCOL": "SASL_SSL"}, "TANDEM_SECURITY_PROTOCOL: SASL_\\* needs"),
        ({"TANDEM_PARTITONS": "3"}, "TANDEM_PARTITONS: not a tandem setting"),
    ],
)
def test_invalid_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


def test_the_sasl_password_is_secret_and_reaches_the_clients() -> None:
    settings = load_settings(
        {
            "TANDEM_PROFILE": "external",
            "TANDEM_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
            "TANDEM_SECURITY_PROTOCOL": "SASL_SSL",
            "TANDEM_SASL_MECHANISM": "SCRAM-SHA-512",
            "TANDEM_SASL_USERNAME": "tandem",
            "TANDEM_SASL_PASSWORD": "hunter2",
        }
    )
    assert "hunter2" not in repr(settings)
    config = producer_config(settings)
    assert config["sasl_plain_password"] == "hunter2"
    assert config["bootstrap_servers"] == ["kafka-1:9093", "kafka-2:9093"]
    assert config["acks"] == "all"
    # Outside the embedded profile the consumer keeps Kafka's own group timing.
    assert "session_timeout_ms" not in consumer_config(settings, group_id="g")
    native = librdkafka_producer_config(settings)
    assert (native["bootstrap.servers"], native["security.protocol"], native["sasl.mechanism"]) == (
        "kafka-1:9093,kafka-2:9093", "sasl_ssl", "SCRAM-SHA-512")
    assert (native["sasl.username"], native["sasl.password"], native["acks"]) == ("tandem", "hunter2", "all")


def test_the_librdkafka_producer_accepts_every_option_tandem_gives_it(tmp_path) -> None:
    """librdkafka rejects an unknown or misspelt option when the producer is made (no broker needed)."""
    import confluent_kafka

    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    settings = load_settings({"TANDEM_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TANDEM_SECURITY_PROTOCOL": "SSL",
                              "TANDEM_SSL_CAFILE": str(tmp_path / "ca.pem")})
    config = librdkafka_producer_config(settings, **{"linger.ms": 100})
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem") and config["linger.ms"] == 100
    plain = librdkafka_producer_config(load_settings({"TANDEM_BOOTSTRAP_SERVERS": "127.0.0.1:1"}))
    sasl = librdkafka_producer_config(load_settings({
        "TANDEM_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TANDEM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TANDEM_SASL_MECHANISM": "SCRAM-SHA-256", "TANDEM_SASL_USERNAME": "u", "TANDEM_SASL_PASSWORD": "p"}))
    for config in (plain, sasl):
        confluent_kafka.Producer(config).flush(0)
    with pytest.raises(confluent_kafka.KafkaException, match="No such configuration property"):
        confluent_kafka.Producer({**plain, "linger.msec": 5})


def test_the_embedded_profile_shortens_group_timing() -> None:
    settings = load_settings({"TANDEM_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    config = consumer_config(settings, group_id="g")
    assert (config["session_timeout_ms"], config["heartbeat_interval_ms"]) == (6000, 1000)
    assert config["auto_offset_reset"] == "earliest"


def test_without_a_bootstrap_or_a_running_broker_the_error_says_what_to_do(tmp_path) -> None:
    settings = load_settings({"TANDEM_STATE_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="tandem broker up"):
        settings.resolved_bootstrap()
