"""The batch path's subcommands: ``tandem archive run`` and ``tandem experiments recompute |
add-metric | check``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from infra.metrics import METRICS_PORTS
from infra.settings import Settings

ENGINES = ("duckdb", "spark")


def add_archive(commands_parser: Any) -> None:
    archive = commands_parser.add_parser("archive", help="the event archive (Parquet) for the batch path")
    actions = archive.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run the archiver (its own consumer group)")
    run.add_argument("--archive", default=None, help="dataset URL or path (default: TANDEM_ARCHIVE_URL or "
                                                      "<state dir>/archive)")
    run.add_argument("--flush-interval", type=float, default=30.0, help="seconds a record may wait for its file")
    run.add_argument("--max-records", type=int, default=200_000, help="records per batch of files, at most")
    run.add_argument("--idle-exit", type=float, default=None, help="exit after this many idle seconds")
    run.add_argument("--metrics-port", type=int, default=METRICS_PORTS["archiver"],
                     help="loopback port of /metrics (default %(default)s; 0: any free port; "
                          "a taken port is replaced by a free one, logged)")
    run.add_argument("--crash-after-batches", type=int, default=None, help=argparse.SUPPRESS)  # crash tests
    archive.set_defaults(handler=cmd_archive)


def add_experiment_actions(actions: Any) -> None:
    """``recompute``, ``add-metric`` and ``check`` under ``tandem experiments``."""
    recompute = actions.add_parser("recompute", help="an experiment's sufficient statistics from the archive")
    recompute.add_argument("experiment")
    recompute.add_argument("--engine", choices=ENGINES, default="duckdb")
    recompute.add_argument("--metric", action="append", default=None, help="a metric to compute (repeatable)")
    recompute.add_argument("--out", default=None, help="write the `tandem stats` input here (default: stdout)")
    _common(recompute)
    recompute.set_defaults(handler=cmd_recompute)
    add = actions.add_parser("add-metric", help="add a metric to a running experiment: a new spec version, "
                                                "the metric computed in batch")
    add.add_argument("experiment")
    add.add_argument("file", help="YAML with one metric definition, as under `metrics:` in a spec")
    add.add_argument("--who", default=None, help="recorded in the spec's history (default: your user name)")
    add.set_defaults(handler=cmd_add_metric)
    check = actions.add_parser("check", help="compare the stream's figures with the archive's")
    check.add_argument("experiment")
    check.add_argument("--engine", choices=ENGINES, action="append", default=None, help="repeatable")
    _common(check)
    check.set_defaults(handler=cmd_check)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", default=None, help="dataset URL or path (default: <state dir>/archive)")
    parser.add_argument("--allowed-lateness", default="30m", help="the aggregator's, e.g. 30m")


def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.batch.archiver import Archiver

    archiver = Archiver(settings=settings, archive_url=args.archive, flush_interval_s=args.flush_interval,
                        max_records=args.max_records, crash_after_batches=args.crash_after_batches,
                        metrics_port=args.metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: archiver.stop())
    signal.signal(signal.SIGINT, lambda *_: archiver.stop())
    stats = archiver.run(idle_exit_s=args.idle_exit)
    print(json.dumps(stats.__dict__), file=sys.stderr)
    return 0


def stats_input(spec: Any, result: Any) -> dict[str, Any]:
    """A batch result as the ``tandem stats`` input (control first, as the report orders it)."""
    variants = [spec.control] + [v.name for v in spec.variants if v.name != spec.control]
    by_key = {(s.variant, s.metric): s for s in result.stats}
    metrics = []
    for metric in (m for m in spec.metrics if any(s.metric == m.name for s in result.stats)):
        rows = []
        for name in variants:
            s = by_key[(name, metric.name)]
            row: dict[str, Any] = {"name": name, "n": s.n, "sum": s.sum}
            if metric.kind != "proportion":
                row["sum_sq"] = s.sum_sq
            row.update({k: v for k, v in s.sums().items() if k not in ("sum", "sum_sq") and v is not None})
            rows.append(row)
        entry: dict[str, Any] = {"name": metric.name, "kind": metric.kind, "role": metric.role,
                                 "direction": metric.direction, "variants": rows}
        if metric.margin is not None:
            entry["non_inferiority_margin"] = metric.margin
        metrics.append(entry)
    exposed = {s.variant: s.exposed for s in result.stats}
    return {
        "alpha": spec.alpha, "control": spec.control, "correction": spec.correction,
        "expected_weights": {v.name: v.weight for v in spec.variants},
        "exposed": {name: exposed.get(name, 0) for name in variants},
        "metrics": metrics,
    }


def cmd_recompute(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.batch.archive import Archive
    from experiments.batch.archiver import default_archive_url
    from experiments.batch.engines import engine
    from experiments.batch.recompute import recompute
    from experiments.batch.specs import added_versions, read_spec
    from experiments.lifecycle import read_versions
    from experiments.spec import parse_duration

    archive = Archive(args.archive or default_archive_url(settings))
    spec = read_spec(settings, args.experiment)
    added = added_versions(read_versions(settings, args.experiment))
    chosen = engine(args.engine, master=settings.spark_master) if args.engine == "spark" else engine(args.engine)
    result = recompute(spec, archive, engine=chosen, metrics=args.metric,
                       allowed_lateness_ms=parse_duration(args.allowed_lateness))
    text = json.dumps(stats_input(spec, result), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    for metric in sorted({s.metric for s in result.stats}):
        version = added.get(metric)
        origin = f"added in spec version {version.version}" if version else "configured"
        print(f"{metric}: source batch ({result.engine}), {origin}, windows closed from {_when(result.covers_from)} "
              f"to {_when(result.closed_upto)} (watermark {_when(result.watermark)})", file=sys.stderr)
    return 0


def _when(ts: int | None) -> str:
    from datetime import UTC, datetime

    return "never" if ts is None else datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_add_metric(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from experiments.batch.specs import add_metric

    version = add_metric(settings, args.experiment, args.file, who=args.who or getpass.getuser())
    print(f"experiment {version.experiment}: spec version {version.version} adds metric {version.metric} "
          f"(source batch: `tandem report {version.experiment}` computes it from the archive)")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.batch.check import check_experiment
    from experiments.spec import parse_duration

    result = check_experiment(settings=settings, experiment=args.experiment, engines=tuple(args.engine or ["duckdb"]),
                              archive_url=args.archive, allowed_lateness_ms=parse_duration(args.allowed_lateness))
    print("\n".join(result.lines()))
    return 0 if result.equal else 1
