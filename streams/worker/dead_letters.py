"""Publish a dead letter for any agent: the raw record, where it came from, and why.

The envelope is ``streams.events.DeadLetter`` (key = the source topic). Inside an agent the
send is attached to the source record's offset by Faust, so the dead letter is published
before that offset can be committed: a crash may repeat a dead letter (same
``dead_letter_id``, ``topic:partition:offset:stage``), never lose one.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.events import dead_letter, encode_dead_letter

logger = logging.getLogger(__name__)


class DeadLetters:
    """Sends dead letters to one Faust topic (``value_serializer="raw"``) and counts them."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic
        self.count = 0
        self.by_stage: dict[str, int] = {}

    async def publish(self, message: Any, error: BaseException | str, *, stage: str) -> None:
        """Dead-letter the Faust ``message`` (``event.message``) for ``error`` at ``stage``."""
        letter = dead_letter(
            raw_value=_as_bytes(message.value),
            raw_key=_as_bytes(message.key),
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error=error,
            stage=stage,
        )
        await self.topic.send(key=message.topic.encode("utf-8"), value=encode_dead_letter(letter))
        self.count += 1
        self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        logger.info("dead letter %s: %s", letter.dead_letter_id, letter.error)


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")
