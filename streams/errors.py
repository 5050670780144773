"""Errors of the personalization stack."""

from infra.errors import TandemError


class InvalidRecord(TandemError, ValueError):
    """A record on the wire failed validation; the message names the field."""


class RecordTooLarge(InvalidRecord):
    """A record is larger than the configured size limit."""


class DeliveryError(TandemError, RuntimeError):
    """The broker did not acknowledge records handed to a publisher."""
