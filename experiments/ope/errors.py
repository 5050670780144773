"""Errors of off-policy evaluation."""

from infra.errors import TandemError


class OPEError(TandemError, ValueError):
    """Base of the errors off-policy evaluation raises on purpose."""


class InvalidLog(OPEError):
    """A logged decision cannot be used: no rows, a bad propensity, a non-finite reward."""


class InvalidTarget(OPEError):
    """The candidate policy's probabilities are not a distribution over the logged arms."""


class GateRefused(OPEError):
    """The evaluation gate refused a spec: a variant's policy has no passing off-policy evaluation."""
