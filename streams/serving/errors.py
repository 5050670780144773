"""Errors of the serving API."""

from infra.errors import TandemError


class ServingError(TandemError):
    """Base of the errors the serving API raises on purpose."""


class InvalidRequest(ServingError, ValueError):
    """A request body failed validation; the message names the field (answered with 4xx)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SpoolError(ServingError):
    """The decision log's spool directory cannot be used (locked by another process, or foreign files)."""
