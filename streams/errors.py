"""Errors of the personalization stack."""

from infra.errors import DeliveryError, TandemError

__all__ = ["DeliveryError", "InvalidRecord", "RecordTooLarge"]


class InvalidRecord(TandemError, ValueError):
    """A record on the wire failed validation; the message names the field."""


class RecordTooLarge(InvalidRecord):
    """A record is larger than the configured size limit."""
