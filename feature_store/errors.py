"""Errors of the feature-store layer."""

from infra.errors import TandemError


class FeatureStoreError(TandemError, RuntimeError):
    """Feast could not be set up, written or read."""


class FeatureStoreConfigError(TandemError, ValueError):
    """The feature-store settings or feature schema are invalid."""


class InvalidFeatureRow(TandemError, ValueError):
    """A feature row handed to the store is malformed; the message names the row and field."""
