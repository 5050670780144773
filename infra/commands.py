"""The ``tandem`` subcommands of the stacks: demo, features, serving, experiments, stats."""

from __future__ import annotations

import argparse
from typing import Any


def register(*, commands_parser: Any) -> None:
    demo = commands_parser.add_parser("demo", help="the end-to-end demo on the embedded broker")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Any) -> int:
    from infra.demo import run_demo

    return run_demo(settings=settings)
