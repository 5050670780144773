"""The ``tandem`` command, the top floor: thin wiring from arguments to the stacks' functions."""

from infra.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
