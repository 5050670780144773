"""The ``tandem`` command: thin wiring from arguments to the packages' functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from infra.errors import TandemError
from infra.settings import Settings, load_settings

logger = logging.getLogger("tandem")

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_DOWN = 3


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "aiokafka", "faust", "mode", "feast", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def _open_input(path: str) -> TextIO:
    return sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115


# broker


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from infra.kafka import broker

    state_file = settings.broker_state_file
    if args.action == "up":
        started = broker.daemon_up(state_file=state_file, binary=settings.broker_binary)
        print(f"broker pid {started['pid']}, log {started['log']}", file=sys.stderr)
        print(started["bootstrap"])
        return EXIT_OK
    if args.action == "down":
        stopped = broker.daemon_down(state_file=state_file)
        print("broker stopped" if stopped else "no broker was running")
        return EXIT_OK
    state = broker.daemon_running(state_file)
    if state is None or not broker.answers_metadata(str(state["bootstrap"])):
        print("down")
        return EXIT_DOWN
    print(f"up {state['bootstrap']} pid {state['pid']}")
    return EXIT_OK


# topics


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from infra.kafka.topics import TOPICS, apply_topics

    if args.action == "list":
        for spec in TOPICS:
            policy = "compact" if spec.compacted else "delete"
            print(f"{settings.topic(spec):32} key={spec.key:28} {policy}")
        return EXIT_OK
    report = apply_topics(settings)
    for topic in report.created:
        print(f"created  {topic}")
    for topic in report.existing:
        print(f"existing {topic}")
    for problem in report.mismatched:
        print(f"MISMATCH {problem}")
    return EXIT_OK


# publish and consume


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from infra.kafka.config import producer_config
    from streams.producer import EventPublisher, publish_lines

    topic = settings.topic(args.topic)
    with _open_input(args.file) as lines, EventPublisher(
        config=producer_config(settings), topic=topic
    ) as publisher:
        report = publish_lines(publisher, lines)
    for number, reason in report.rejected:
        print(f"line {number}: rejected: {reason}", file=sys.stderr)
    print(json.dumps({"topic": topic, "accepted": report.accepted, "rejected": len(report.rejected)}))
    return EXIT_REJECTED if report.rejected else EXIT_OK


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    from infra.kafka.topic_reader import newest_per_key, read_topic

    records = read_topic(settings, settings.topic(args.topic), timeout_s=args.timeout)
    if args.newest_per_key:
        records = list(newest_per_key(records).values())
    for record in records[: args.max] if args.max else records:
        print(record.value.decode("utf-8", errors="replace"))
    print(f"{len(records)} records from {settings.topic(args.topic)}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="the embedded Kafka-compatible broker")
    broker.add_argument("action", choices=["up", "down", "status"])
    broker.set_defaults(handler=cmd_broker)

    topics = commands.add_parser("topics", help="provision the topic table")
    topics.add_argument("action", choices=["apply", "list"])
    topics.set_defaults(handler=cmd_topics)

    publish = commands.add_parser("publish", help="publish JSON lines of listening events")
    publish.add_argument("file", help="a file of JSON lines, or - for standard input")
    publish.add_argument("--topic", default="events", help="topic name without prefix (default: events)")
    publish.set_defaults(handler=cmd_publish)

    consume = commands.add_parser("consume", help="print a topic from the beginning to its end")
    consume.add_argument("topic", help="topic name without prefix, e.g. events or dead-letters")
    consume.add_argument("--max", type=int, default=0, help="print at most this many records")
    consume.add_argument("--newest-per-key", action="store_true", help="compact on read")
    consume.add_argument("--timeout", type=float, default=30.0)
    consume.set_defaults(handler=cmd_consume)

    from infra.cli import commands as stack_commands

    stack_commands.register(commands_parser=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = load_settings()
        return int(args.handler(args, settings))
    except TandemError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


