"""Errors of the experimentation stack."""

from infra.errors import TandemError


class InvalidSpec(TandemError, ValueError):
    """An experiment spec failed validation; the message names the field (``metrics[2].window.length``)."""


class SpecConflict(InvalidSpec):
    """A spec cannot be registered next to what is already running (changed metrics, overlapping layers)."""


class StoreError(TandemError, RuntimeError):
    """The aggregation state store could not commit; discard the object and reopen the database."""


class TransitionRefused(TandemError, ValueError):
    """A lifecycle change that is not allowed (the message names the field and the reason); nothing changed."""


class UnknownExperiment(TandemError, LookupError):
    """No spec of that id on the experiments topic."""


class FencedWrite(StoreError):
    """A commit for a partition that another process has claimed since: nothing was written."""
