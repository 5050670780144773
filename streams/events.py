"""Wire schemas of every record tandem moves through Kafka, and their codec.

Records are UTF-8 JSON objects. Each carries a schema version ``v`` (1 today),
a unique id and an event time ``ts`` in milliseconds since the Unix epoch.
Validation is strict: unknown fields, wrong types (``"5"`` for a number),
NaN or infinities, absurd timestamps and records over the size limit are
rejected with a message that names the field.

>>> event = decode_event(b'{"event_id": "e1", "user_id": "u1", "ts": 1767225600000,'
...                      b' "type": "play", "item_id": "i9", "genre": "jazz", "ms_played": 30000}')
>>> event.user_id, event.type.value
('u1', 'play')
>>> decode_event(b'{"event_id": "e1"}')
Traceback (most recent call last):
...
streams.errors.InvalidRecord: ListeningEvent: user_id: Field required; ts: Field required; type: Field required
"""

from __future__ import annotations

import base64
import json
import os
import time
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.errors import InvalidRecord, RecordTooLarge

SCHEMA_VERSION: Literal[1] = 1

#: Records larger than this are rejected before they are parsed.
MAX_RECORD_BYTES = 64 * 1024

#: Event times outside [2000-01-01, 2100-01-01) are taken as a unit or clock error.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

#: A dead letter keeps at most this much of the rejected value (its full size is recorded).
MAX_DEAD_LETTER_VALUE_BYTES = 512 * 1024

#: No single play lasts longer than a day.
MAX_MS_PLAYED = 86_400_000

RecordId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
EventTime = Annotated[int, Field(ge=MIN_TS_MS, lt=MAX_TS_MS)]


class EventType(StrEnum):
    PLAY = "play"
    SKIP = "skip"
    LIKE = "like"
    SESSION_START = "session_start"
    SESSION_END = "session_end"


#: Event types that concern one item and so must name it.
ITEM_EVENT_TYPES = frozenset({EventType.PLAY, EventType.SKIP, EventType.LIKE})


class _Record(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, use_enum_values=False
    )

    v: Literal[1] = SCHEMA_VERSION


class ListeningEvent(_Record):
    """What a listener did, published by producers to ``events`` keyed by user_id."""

    event_id: RecordId
    user_id: RecordId
    ts: EventTime
    type: Annotated[EventType, Field(strict=False)]  # JSON carries the value as a string
    item_id: Name | None = None
    genre: Name | None = None
    ms_played: Annotated[int, Field(ge=0, le=MAX_MS_PLAYED)] = 0

    @model_validator(mode="after")
    def _item_events_name_their_item(self) -> ListeningEvent:
        if self.type in ITEM_EVENT_TYPES and self.item_id is None:
            raise ValueError(f"item_id: required for a {self.type.value} event")
        return self


class Decision(_Record):
    """What serving chose for a user, and with which probability."""

    decision_id: RecordId
    user_id: RecordId
    ts: EventTime
    policy: Name
    policy_version: Annotated[int, Field(ge=0)]
    arm: Name
    propensity: Annotated[float, Field(gt=0.0, le=1.0)]
    arms: Annotated[list[Name], Field(min_length=1, max_length=1000)]
    context: dict[Name, float] = Field(default_factory=dict)
    assignments: dict[Name, Name] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _arm_is_a_candidate(self) -> Decision:
        if self.arm not in self.arms:
            raise ValueError(f"arm: {self.arm!r} is not one of the candidate arms")
        return self


class Exposure(_Record):
    """A user saw a variant of an experiment; the first one anchors metric windows."""

    exposure_id: RecordId
    experiment: Name
    variant: Name
    user_id: RecordId
    ts: EventTime
    #: where and how the variant shaped the response: the surface and the parameters it set there
    surface: Name | None = None
    params: Annotated[list[Name], Field(max_length=100)] = Field(default_factory=list)


class StickyAssignment(_Record):
    """The variant a bandit experiment gave a user on arrival: kept while the experiment's weights move."""

    assignment_id: RecordId
    experiment: Name
    variant: Name
    user_id: RecordId
    ts: EventTime

    @property
    def log_key(self) -> str:
        """Its key on the compacted topic: one record per experiment and user."""
        return f"{self.experiment}/{self.user_id}"


class ModelSnapshot(_Record):
    """A policy's learned state, as JSON: never pickle on a topic."""

    snapshot_id: RecordId
    policy: Name
    version: Annotated[int, Field(ge=0)]
    ts: EventTime
    updates: Annotated[int, Field(ge=0)]
    state: dict[str, Any]


#: Each record of a learner checkpoint (its head, or one part of its state) stays below this,
#: itself below the producers' default 1,000,000-byte request size.
MAX_CHECKPOINT_BYTES = 900 * 1024

#: Compressed state bytes per checkpoint part (base64 makes them 4/3 as many characters).
MAX_PART_STATE_BYTES = 600 * 1024

TopicName = Annotated[str, Field(min_length=1, max_length=249)]


class InputPosition(BaseModel):
    """The next offset of one input partition that a checkpoint does *not* yet reflect."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    topic: TopicName
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]


class LearnerCheckpoint(_Record):
    """The head of a learner checkpoint, on the compacted ``learner-checkpoints`` topic keyed by
    ``learner_id``: the input positions the checkpoint reflects, and where its state is.

    The state (JSON, never pickle) is zlib-compressed and split into ``parts``
    ``CheckpointPart`` records keyed ``<learner_id>/<slot>/<index>``, written before the head;
    ``state_bytes`` and ``state_sha256`` are the compressed state's length and digest."""

    checkpoint_id: RecordId
    learner_id: Name
    seq: Annotated[int, Field(ge=0)]
    ts: EventTime
    positions: list[InputPosition]
    slot: Literal[0, 1]
    parts: Annotated[int, Field(ge=1, le=10_000)]
    state_bytes: Annotated[int, Field(ge=0)]
    state_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _one_position_per_partition(self) -> LearnerCheckpoint:
        partitions = [(p.topic, p.partition) for p in self.positions]
        if len(set(partitions)) != len(partitions):
            raise ValueError("positions: a partition is listed twice")
        return self


class CheckpointPart(_Record):
    """Part ``index`` of a learner checkpoint's compressed state, as base64."""

    checkpoint_id: RecordId
    index: Annotated[int, Field(ge=0, lt=10_000)]
    data: Annotated[str, Field(max_length=(MAX_PART_STATE_BYTES + 2) // 3 * 4, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class DeadLetter(_Record):
    """A record that could not be processed, with where it came from and why."""

    dead_letter_id: RecordId
    source_topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str
    value_bytes: int
    error: str
    error_type: str
    stage: str
    recorded_at_ms: int

    def raw_value(self) -> bytes:
        return base64.b64decode(self.value_b64)


RecordT = TypeVar("RecordT", bound=_Record)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def _reject_nonfinite(token: str) -> float:
    raise ValueError(f"non-finite number {token} is not valid JSON")


def decode(
    raw: bytes | bytearray | memoryview | str, schema: type[RecordT], *, limit: int = MAX_RECORD_BYTES
) -> RecordT:
    """Parse and validate one record, raising ``InvalidRecord`` that names the field."""
    if type(raw) is not bytes:  # what consumers hand over already is, and is not copied
        raw = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    size = len(raw)
    if size > limit:
        raise RecordTooLarge(f"{schema.__name__}: record is {size} bytes, over the {limit}-byte limit")
    # The common case, valid JSON, parsed and validated in one pass by pydantic's validator (~1.6 µs
    # against ~5.2 µs for an event; called directly, as ``model_validate_json`` adds a Python frame).
    # Its parser accepts NaN and Infinity, which the path below refuses: records that may hold one,
    # and every record it rejects, take that path for its precise error.
    if b"NaN" not in raw and b"Infinity" not in raw:
        try:
            return schema.__pydantic_validator__.validate_json(raw)  # type: ignore[no-any-return]
        except ValidationError:
            pass
    try:
        payload = json.loads(raw.decode("utf-8"), parse_constant=_reject_nonfinite)
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"{schema.__name__}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        raise InvalidRecord(f"{schema.__name__}: malformed JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise InvalidRecord(f"{schema.__name__}: expected a JSON object, got {type(payload).__name__}")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRecord(f"{schema.__name__}: {_describe(exc)}") from None


def decode_event(raw: bytes | bytearray | memoryview | str) -> ListeningEvent:
    return decode(raw, ListeningEvent)


def encode(record: _Record, *, limit: int = MAX_RECORD_BYTES) -> bytes:
    """Serialize a record as compact UTF-8 JSON, refusing to write an oversized one."""
    data = record.model_dump_json(exclude_none=True).encode("utf-8")
    if len(data) > limit:
        raise RecordTooLarge(
            f"{type(record).__name__}: record is {len(data)} bytes, over the {limit}-byte limit"
        )
    return data


def encode_dead_letter(record: DeadLetter) -> bytes:
    """Dead letters may carry an oversized rejected value, so they have a larger limit."""
    return encode(record, limit=2 * MAX_DEAD_LETTER_VALUE_BYTES)


def decode_dead_letter(raw: bytes | bytearray | memoryview | str) -> DeadLetter:
    return decode(raw, DeadLetter, limit=2 * MAX_DEAD_LETTER_VALUE_BYTES)


def encode_checkpoint(record: LearnerCheckpoint | CheckpointPart) -> bytes:
    return encode(record, limit=MAX_CHECKPOINT_BYTES)


def decode_checkpoint(raw: bytes | bytearray | memoryview | str) -> LearnerCheckpoint:
    return decode(raw, LearnerCheckpoint, limit=MAX_CHECKPOINT_BYTES)


def decode_checkpoint_part(raw: bytes | bytearray | memoryview | str) -> CheckpointPart:
    return decode(raw, CheckpointPart, limit=MAX_CHECKPOINT_BYTES)


def new_id() -> str:
    """128 random bits as 32 hex digits: a UUID4's entropy without building a UUID (5x cheaper,
    and serving makes one per request)."""
    return os.urandom(16).hex()


def dead_letter(
    *,
    raw_value: bytes | None,
    raw_key: bytes | None,
    source_topic: str,
    partition: int,
    offset: int,
    error: BaseException | str,
    stage: str,
) -> DeadLetter:
    """Wrap a rejected record with its origin and the reason it was rejected."""
    return DeadLetter(
        dead_letter_id=f"{source_topic}:{partition}:{offset}:{stage}",
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(raw_key).decode("ascii") if raw_key is not None else None,
        value_b64=base64.b64encode((raw_value or b"")[:MAX_DEAD_LETTER_VALUE_BYTES]).decode("ascii"),
        value_bytes=len(raw_value or b""),
        error=str(error),
        error_type=type(error).__name__ if isinstance(error, BaseException) else "Rejected",
        stage=stage,
        recorded_at_ms=int(time.time() * 1000),  # metadata only, never used for windows
    )


