"""Errors of the batch path: the archive, the metric compiler and the engines."""

from __future__ import annotations

from experiments.errors import InvalidSpec
from infra.errors import TandemError


class BatchError(TandemError, RuntimeError):
    """The batch path could not produce its figures."""


class CompileError(InvalidSpec):
    """A metric the SQL compiler cannot express; the message names the field (``metrics[0].measure.agg``)."""


class ArchiveFileError(BatchError):
    """An archive file that cannot be used; ``path`` names it (never skipped silently)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CorruptArchiveFile(ArchiveFileError):
    """The file is not a readable Parquet file of the archive (truncated, overwritten, foreign)."""


class NewerArchiveSchema(ArchiveFileError):
    """The file was written by a newer archive schema than this code reads."""
