"""The personalization stack: the wire schemas of every record (``streams.events``), the event
producer (``streams.producer``), features, policies, learning, serving and the Faust workers.

This package exports the records and their codec, the producer and the stack's errors, each
imported on first use (the schemas need pydantic): ``import streams.policies`` or any other
subpackage costs that subpackage alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from streams.errors import DeliveryError, InvalidRecord, RecordTooLarge
    from streams.events import (
        MAX_CHECKPOINT_BYTES,
        MAX_DEAD_LETTER_VALUE_BYTES,
        MAX_PART_STATE_BYTES,
        MAX_RECORD_BYTES,
        MAX_TS_MS,
        MIN_TS_MS,
        SCHEMA_VERSION,
        CheckpointPart,
        DeadLetter,
        Decision,
        EventType,
        Exposure,
        InputPosition,
        LearnerCheckpoint,
        ListeningEvent,
        ModelSnapshot,
        dead_letter,
        decode,
        decode_checkpoint,
        decode_checkpoint_part,
        decode_dead_letter,
        decode_event,
        encode,
        encode_checkpoint,
        encode_dead_letter,
        new_id,
    )
    from streams.producer import EventPublisher, PublishReport, parse_lines, publish_lines

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_DEAD_LETTER_VALUE_BYTES",
    "MAX_PART_STATE_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "SCHEMA_VERSION",
    "CheckpointPart",
    "DeadLetter",
    "Decision",
    "DeliveryError",
    "EventPublisher",
    "EventType",
    "Exposure",
    "InputPosition",
    "InvalidRecord",
    "LearnerCheckpoint",
    "ListeningEvent",
    "ModelSnapshot",
    "PublishReport",
    "RecordTooLarge",
    "dead_letter",
    "decode",
    "decode_checkpoint",
    "decode_checkpoint_part",
    "decode_dead_letter",
    "decode_event",
    "encode",
    "encode_checkpoint",
    "encode_dead_letter",
    "new_id",
    "parse_lines",
    "publish_lines",
]

#: Exports imported on first use, and their modules.
_LAZY = {
    **dict.fromkeys(
        ("MAX_CHECKPOINT_BYTES", "MAX_DEAD_LETTER_VALUE_BYTES", "MAX_PART_STATE_BYTES", "MAX_RECORD_BYTES",
         "MAX_TS_MS", "MIN_TS_MS", "SCHEMA_VERSION", "CheckpointPart", "DeadLetter", "Decision", "EventType",
         "Exposure", "InputPosition", "LearnerCheckpoint", "ListeningEvent", "ModelSnapshot", "dead_letter",
         "decode", "decode_checkpoint", "decode_checkpoint_part", "decode_dead_letter", "decode_event", "encode",
         "encode_checkpoint", "encode_dead_letter", "new_id"),
        "streams.events",
    ),
    **dict.fromkeys(("DeliveryError", "InvalidRecord", "RecordTooLarge"), "streams.errors"),
    **dict.fromkeys(("EventPublisher", "PublishReport", "parse_lines", "publish_lines"), "streams.producer"),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
