"""Errors of the bandit policies."""

from infra.errors import TandemError


class PolicyError(TandemError):
    """Base of the errors a policy raises on purpose."""


class InvalidArms(PolicyError, ValueError):
    """The candidate arms are empty, duplicated or not strings."""


class InvalidContext(PolicyError, ValueError):
    """A context feature is not a finite number."""


class InvalidReward(PolicyError, ValueError):
    """A reward is not a finite number."""


class UnknownPolicy(PolicyError, KeyError):
    """No policy is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidPolicyState(PolicyError, ValueError):
    """A serialized policy state is malformed or of another policy or format."""
