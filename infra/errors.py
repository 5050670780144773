"""The project's root exception and the infra package's own errors."""


class TandemError(Exception):
    """Root of every error tandem raises on purpose."""


class SettingsError(TandemError, ValueError):
    """A TANDEM_* environment variable is missing or invalid."""


class BrokerError(TandemError, RuntimeError):
    """The embedded broker could not be started, reached or stopped."""


class ProvisioningError(TandemError, RuntimeError):
    """Topics could not be created or do not match their spec."""


class DeliveryError(TandemError, RuntimeError):
    """The broker did not acknowledge records handed to a publisher."""


class StaleState(TandemError, RuntimeError):
    """A consumer's stored state belongs to a log the broker no longer holds (a restarted embedded
    broker, a recreated topic): the consumer stops before consuming anything, its state kept."""
