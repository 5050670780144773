"""Errors of the console's HTTP layer (the lifecycle's are in ``experiments.errors``)."""

from __future__ import annotations

from infra.errors import TandemError


class BadBody(TandemError, ValueError):
    """A request body that is not the endpoint's: ``problems`` are (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))
        self.problems = problems
