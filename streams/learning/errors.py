"""Errors of the learning path."""

from infra.errors import TandemError


class InvalidJoinerState(TandemError, ValueError):
    """A serialized reward-joiner state is malformed or of another format."""


class InvalidLearnerState(TandemError, ValueError):
    """A serialized online-learner state (a checkpoint's ``state``) is malformed or of another format."""
