"""Running a personalization worker in this process: the features worker (the feature store,
then Faust) or, with ``--role learner``, the learner (``streams.worker.learner``).

    python -m streams.worker [--role features|learner] [--flush-records N] [--flush-ms T]

Settings come from ``TANDEM_*`` variables. Faust's web server stays off (it would listen on every interface).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from infra.settings import load_settings
from streams.worker.features.commands import FEATURES_ONLY, run_worker
from streams.worker.learner.commands import run_learner


def run_app(app: Any, loglevel: str) -> int:
    """Run a Faust ``app`` in this process until it stops; the exit code."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("features", "learner"), default="features")
    parser.add_argument("--status-interval", type=float, default=1.0, help="seconds between status files")
    parser.add_argument("--commit-interval", type=float, default=None, help="seconds between offset commits")
    parser.add_argument("--app-name", default=None,
                        help="app id and consumer group, after the topic prefix (a second, independent app)")
    parser.add_argument("--loglevel", default="warning")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="loopback port of /metrics (default: the role's, see infra.metrics; 0: any free port)")
    features = parser.add_argument_group("features worker only")
    features.add_argument("--flush-records", type=int, default=None, help="default 1000")
    features.add_argument("--flush-ms", type=float, default=None,
                          help="ms a batch's first record waits for others (default 10; longer while a write runs)")
    features.add_argument("--persist-interval", type=float, default=None,
                          help="seconds between table writes of the changed user states")
    features.add_argument("--store", choices=("rocksdb://", "memory://"), default=None)
    features.add_argument("--changelog-batches", action="store_true", default=None,
                          help="let the producer batch records (faster; wrong end offsets on the embedded broker)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in FEATURES_ONLY if getattr(args, name) is not None]
    named: dict[str, Any] = {"app_name": args.app_name} if args.app_name else {}
    if args.metrics_port is not None:
        named["metrics_port"] = args.metrics_port
    if args.role == "learner":
        if given:
            parser.error(f"{', '.join(given)}: options of the features worker, not of the learner")
        return run_learner(load_settings(), loglevel=args.loglevel, status_interval_s=args.status_interval,
                           commit_interval_s=args.commit_interval, **named)
    for name, default in FEATURES_ONLY.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return run_worker(
        load_settings(), loglevel=args.loglevel,
        flush_records=args.flush_records, flush_ms=args.flush_ms, store=args.store,
        status_interval_s=args.status_interval, commit_interval_s=args.commit_interval,
        one_record_per_batch=False if args.changelog_batches else None, **named,
        **({"persist_interval_s": args.persist_interval} if args.persist_interval else {}),
    )
