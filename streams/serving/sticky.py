"""The variants bandit experiments gave users when they arrived, so they keep them as weights move.

Serving remembers an assignment the moment it makes it and logs it (``StickyAssignment``) to the
compacted ``sticky-assignments`` topic; every serving process reads that topic from its start and
follows it (``LiveConfigReader``), so a user keeps the variant whichever process answers, and
after a restart. Memory grows with the users of bandit experiments only, never with A/B tests
(whose assignment is a pure function of the user). A user who reaches two processes within the
read-back delay of its first assignment at a period boundary can be given two variants; the
aggregator keeps the first exposure's variant and counts such users (``multi_variant_users``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from streams.errors import InvalidRecord
from streams.events import StickyAssignment, decode

logger = logging.getLogger(__name__)


class StickyAssignments:
    """``(experiment, user) -> variant``; written by the request path and the reader thread."""

    def __init__(self) -> None:
        self._variants: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self.errors = 0

    def __len__(self) -> int:
        return len(self._variants)

    def get(self, experiment: str, user_id: str) -> str | None:
        return self._variants.get((experiment, user_id))

    def remember(self, experiment: str, user_id: str, variant: str) -> None:
        """Keep the first variant: an assignment read back later never replaces one made earlier."""
        with self._lock:
            self._variants.setdefault((experiment, user_id), variant)

    def apply_record(self, key: bytes | None, value: bytes | None, **_origin: Any) -> None:
        if value is None:
            return
        try:
            record = decode(value, StickyAssignment)
        except InvalidRecord as exc:
            self.errors += 1
            logger.error("sticky assignment %r not applied: %s", key, exc)
            return
        self.remember(record.experiment, record.user_id, record.variant)
