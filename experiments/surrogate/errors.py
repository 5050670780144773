"""Errors of the surrogate of the long-term outcome."""

from infra.errors import TandemError


class SurrogateError(TandemError, ValueError):
    """Base of the errors the surrogate raises on purpose."""


class InvalidSurrogateData(SurrogateError):
    """Rows that cannot be fitted or validated on (too few, a missing signal, a non-finite value)."""


class InvalidSurrogateState(SurrogateError):
    """A serialized surrogate that cannot be read back (the message names the field)."""
