"""The ``POST /recommend`` body, validated strictly, and the serving parameters.

>>> parse_request(b'{"user_id": "u1", "candidates": ["jazz", "rock"]}').candidates
('jazz', 'rock')
>>> parse_request(b'{"user_id": 5}')
Traceback (most recent call last):
...
streams.serving.errors.InvalidRequest: user_id: Input should be a valid string
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streams.events import MAX_TS_MS, MIN_TS_MS
from streams.serving.errors import InvalidRequest

#: The demo's arms: genres.
DEFAULT_ARMS: tuple[str, ...] = ("pop", "rock", "jazz", "hiphop", "classical", "electronic", "folk", "metal")
MAX_CANDIDATES = 100
MAX_BODY_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """Plain parameters of the serving API (connection settings live in ``infra.settings``).

    ``max_pending`` bounds the decisions and exposures not yet acknowledged by the broker;
    past it new records are counted as overflowed and not buffered (nor spooled). ``spool_dir``:
    every decision and exposure is appended there before its request is answered, and sent
    again by the next process if this one is killed first (``streams.serving.spool``). ``feature_reads``:
    ``inline`` reads Feast on the event loop, ``thread`` in a coalescing reader thread, and
    ``auto`` inline when the store says its reads are in-process (SQLite), else in the
    thread (``streams.serving.features``). In the thread, ``feature_timeout_s`` bounds the
    wait for a read: past it (or with ``max_feature_reads`` users already waiting for one)
    the request is served with the default features and the fallback is counted.
    """

    default_policy: str = "popularity"
    arms: tuple[str, ...] = DEFAULT_ARMS
    max_candidates: int = MAX_CANDIDATES
    max_body_bytes: int = MAX_BODY_BYTES
    max_pending: int = 100_000
    #: The decision log's write-ahead spool (``streams.serving.spool``); None: no spool.
    spool_dir: Path | None = None
    #: fsync the spool at most this often (None: never; a SIGKILL loses nothing either way).
    spool_fsync_interval_s: float | None = None
    feature_reads: Literal["auto", "inline", "thread"] = "auto"
    feature_timeout_s: float = 0.05
    max_feature_reads: int = 1024
    ready_timeout_s: float = 15.0
    #: ``sys.setswitchinterval`` for the ``serve`` process (Python's default is 0.005).
    gil_switch_interval_s: float = 0.001

    def __post_init__(self) -> None:
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms: {self.arms!r} must be distinct and at least one")
        if self.max_pending < 1 or self.max_candidates < 1 or self.max_feature_reads < 1:
            raise ValueError("max_pending, max_candidates and max_feature_reads must be >= 1")
        if not 0 < self.gil_switch_interval_s <= 0.1:
            raise ValueError(f"gil_switch_interval_s: {self.gil_switch_interval_s!r} must be in (0, 0.1]")
        if self.feature_reads not in ("auto", "inline", "thread"):
            raise ValueError(f"feature_reads: {self.feature_reads!r} must be auto, inline or thread")
        if self.spool_fsync_interval_s is not None and not self.spool_fsync_interval_s > 0:
            raise ValueError(f"spool_fsync_interval_s: {self.spool_fsync_interval_s!r} must be > 0")
        if not self.feature_timeout_s > 0:
            raise ValueError(f"feature_timeout_s: {self.feature_timeout_s!r} must be > 0")


Name = Annotated[str, Field(min_length=1, max_length=128)]


class RecommendRequest(BaseModel):
    """``{"user_id": str, "surface": str?, "candidates": [str, ...]?, "ts": int ms?}``; nothing else."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    user_id: Name
    surface: Name = "home"
    candidates: tuple[Name, ...] | None = Field(default=None, min_length=1, max_length=MAX_CANDIDATES)
    ts: Annotated[int, Field(ge=MIN_TS_MS, lt=MAX_TS_MS)] | None = None

    @field_validator("candidates", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value  # JSON has lists; strict wants a tuple

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("candidates must be distinct")
        return value


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def parse_request(raw: bytes, *, max_candidates: int = MAX_CANDIDATES) -> RecommendRequest:
    """Parse and validate a body, raising ``InvalidRequest`` that names the field."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(payload).__name__}")
    try:
        request = RecommendRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from None
    if request.candidates is not None and len(request.candidates) > max_candidates:
        raise InvalidRequest(f"candidates: at most {max_candidates} candidates, got {len(request.candidates)}")
    return request
