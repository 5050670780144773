"""Errors of the statistics engine."""

from infra.errors import TandemError


class StatsError(TandemError):
    """Root of the statistics engine's errors."""


class InvalidStatsInput(StatsError, ValueError):
    """The engine's input failed validation.

    ``problems`` lists ``(field_path, message)`` pairs, e.g.
    ``("metrics[1].variants[0].n", "must be >= 0")``; ``str()`` joins them.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in self.problems))
