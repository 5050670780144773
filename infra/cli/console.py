"""``tandem console`` and ``tandem experiments stop|decide``: thin wiring to ``experiments.console``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra.settings import Settings


def register(*, commands_parser: Any) -> None:
    """Add ``console`` and the ``stop``/``decide`` actions of ``experiments`` (registered before this)."""
    console = commands_parser.add_parser("console", help="the experiment owners' console: API, pages, automatic stop")
    console.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    console.add_argument("--port", type=int, default=8090)
    console.add_argument("--no-monitor", action="store_true", help="do not stop experiments automatically")
    console.add_argument("--max-in-flight", type=_at_least_one, default=8, metavar="N",
                         help="requests answered at once; more are answered 429 at once (default 8)")
    console.set_defaults(handler=cmd_console)

    actions = _subcommands(commands_parser.choices["experiments"])
    stop = actions.add_parser("stop", help="stop a running experiment (serving gives its users the control)")
    stop.add_argument("experiment")
    stop.add_argument("--why", default="", help="the reason, kept in the status history")
    stop.add_argument("--who", default="cli")
    stop.set_defaults(handler=cmd_stop)
    decide = actions.add_parser("decide", help="decide a stopped experiment and write its decision record")
    decide.add_argument("experiment")
    decide.add_argument("--note", default="", help="free text kept in the decision record")
    decide.add_argument("--who", default="cli")
    decide.add_argument("--force", action="store_true", help="decide a running experiment (stops it)")
    decide.set_defaults(handler=cmd_decide)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} < 1")
    return value


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.console import serve_console

    return serve_console(settings, host=args.host, port=args.port, monitor=not args.no_monitor,
                         max_in_flight=args.max_in_flight)


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.console import open_console

    with open_console(settings, monitor=False) as running:
        spec = running.console.stop(args.experiment, who=args.who, why=args.why)
    print(f"experiment {spec.id} stopped (version {len(spec.history)})")
    return 0


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.console import open_console

    with open_console(settings, monitor=False) as running:
        record = running.console.decide(args.experiment, who=args.who, note=args.note, force=args.force)
    print(json.dumps(record.to_dict(), indent=2))
    return 0
