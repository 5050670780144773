"""Errors of the feature logic (windows, per-user state)."""

from infra.errors import TandemError


class FeatureError(TandemError, ValueError):
    """The feature logic was asked something it cannot answer (wrong user, bad config, bad time)."""


class LateEvent(FeatureError):
    """An event arrived further behind the user's newest event time than the allowed lateness.

    The feature state never raises it by itself: ``ApplyResult.error()`` builds one so the
    caller can put the record on the dead-letter topic with a precise reason.
    """


class InvalidState(FeatureError):
    """A serialized per-user state (e.g. read back from a table) is malformed."""
