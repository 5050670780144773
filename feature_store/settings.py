"""Plain parameters of the feature store: where it lives and which online store it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class FeatureStoreSettings(BaseModel):
    """Where the Feast repository lives and which online store serves it.

    ``repo_path`` holds the registry, the SQLite online store and the offline Parquet data
    (``offline/<feature view>/date=YYYY-MM-DD/part-<uuid>.parquet``). ``redis_connection_string``
    uses Feast's format ``host:port[,db=0][,password=...][,ssl=true]``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_path: Path
    project: str = Field(default="tandem", pattern=r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: SecretStr | None = None
    #: How far back a historical (point-in-time) lookup may reach for a user's row.
    ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    #: Append every written row to the offline Parquet data as well.
    write_offline: bool = True
    #: SQLite only: read the stored event times first and drop rows from an older second
    #: (one batched read, ~40% of a write's cost). Off, the SQLite store is last-write-wins.
    #: Redis always reads them (it drops not-newer writes itself; the read makes the report exact).
    drop_older_writes: bool = True

    @model_validator(mode="after")
    def _redis_needs_a_connection_string(self) -> FeatureStoreSettings:
        if self.online_store == "redis" and self.redis_connection_string is None:
            raise ValueError("redis_connection_string: required when online_store is 'redis'")
        return self
