"""The ``tandem`` subcommands of the stacks: demo, experiments, stats and the rest."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from infra.cli import batch, console
from infra.metrics import METRICS_PORTS
from infra.settings import Settings


def register(*, commands_parser: Any) -> None:
    """Add the stacks' subcommands to the ``tandem`` parser."""
    for add in (_add_demo, _add_experiments, _add_features, _add_learner, _add_simulate, _add_up_down, _add_serve,
                _add_evaluate_policy, _add_report, _add_stats, _add_chaos, batch.add_archive):
        add(commands_parser)
    console.register(commands_parser=commands_parser)  # the console and experiments stop|decide


def _add_demo(commands_parser: Any) -> None:
    demo = commands_parser.add_parser("demo", help="the end-to-end demo on the embedded broker")
    demo.add_argument("--users", type=int, default=1500)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", default="report", help="directory for the report, truth and PNGs")
    demo.set_defaults(handler=cmd_demo)


def _add_experiments(commands_parser: Any) -> None:
    experiments = commands_parser.add_parser("experiments", help="experiment specs and the metric aggregator")
    actions = experiments.add_subparsers(dest="action", required=True)
    apply = actions.add_parser("apply", help="validate a YAML spec and publish it to the experiments topic")
    apply.add_argument("file")
    apply.add_argument("--surrogate", default=None,
                       help="the surrogate (JSON from `tandem experiments surrogate`) the evaluation gate uses")
    apply.add_argument("--gate-margin", type=float, default=0.0,
                       help="relative harm the evaluation gate tolerates against the control (default 0)")
    apply.add_argument("--no-gate", action="store_true",
                       help="publish without the evaluation gate; the spec records that it was skipped")
    surrogate = actions.add_parser(
        "surrogate", help="fit the surrogate of day-7 retention on the exposures and events, with its "
                          "held-out validity per past experiment")
    surrogate.add_argument("--out", default=None, help="write the fitted surrogate (JSON) here")
    surrogate.add_argument("--follow", action="store_true",
                           help="keep reading and refit every --every of event time, writing each fit over --out")
    surrogate.add_argument("--every", default="1d", help="event time between refits with --follow, e.g. 1d, 12h")
    surrogate.add_argument("--min-rows", type=int, default=50, help="closed rows a refit needs (default 50)")
    surrogate.add_argument("--allowed-lateness", default="28d",
                           help="with --follow: how far behind the newest event time a record still joins, and so "
                                "how much event time the follower holds (default 28d)")
    surrogate.add_argument("--idle-exit", type=float, default=None,
                           help="with --follow: stop after this many seconds without a record")
    actions.add_parser("list", help="the experiments on the experiments topic")
    aggregate = actions.add_parser("aggregate", help="run the aggregation worker (its own consumer group)")
    aggregate.add_argument("--allowed-lateness", default="30m", help="event-time lateness, e.g. 30m, 2h")
    aggregate.add_argument("--idle-exit", type=float, default=None, help="exit after this many idle seconds")
    aggregate.add_argument(
        "--resolution", default="1ms",
        help="event-time bucket of each user's history: 1ms keeps windows exact, 1d bounds state by users and days",
    )
    aggregate.add_argument(
        "--dedupe-span", default=None,
        help="how long behind watermark - lateness event ids are kept, e.g. 2h (default: the lookback); "
             "older events are late. With --resolution 1d, bounds state by users and days",
    )
    aggregate.add_argument(
        "--no-item-sets", dest="item_sets", action="store_false",
        help="keep no item and genre sets in the history: with --resolution 1d and --dedupe-span, a user's "
             "state is bounded by days and experiments whatever the listening; distinct_items and "
             "distinct_genres metrics are then refused",
    )
    aggregate.add_argument("--metrics-port", type=int, default=METRICS_PORTS["aggregator"],
                           help="loopback port of /metrics (default %(default)s; 0: any free port; "
                                "a taken port is replaced by a free one, logged)")
    aggregate.add_argument("--crash-after-commits", type=int, default=None, help=argparse.SUPPRESS)  # crash tests
    allocate = actions.add_parser("allocate", help="move bandit experiments' weights (Thompson sampling), "
                                                   "a new spec version per period")
    allocate.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    allocate.add_argument("--once", action="store_true", help="one round, then exit")
    metrics = actions.add_parser(
        "metrics", help="an experiment's sufficient statistics: the partials on experiment-metrics, summed"
    )
    metrics.add_argument("experiment")
    batch.add_experiment_actions(actions)  # recompute, add-metric, check: the batch path
    experiments.set_defaults(handler=cmd_experiments)


def _add_features(commands_parser: Any) -> None:
    features = commands_parser.add_parser("features", help="the features worker and the features it writes")
    feature_actions = features.add_subparsers(dest="action", required=True)
    feature_actions.add_parser("run", help="run the features' Faust worker")
    get = feature_actions.add_parser("get", help="a user's features from the online store")
    get.add_argument("user_id")
    feature_actions.add_parser("status", help="the worker's progress and freshness p50/p99")
    features.set_defaults(handler=cmd_features)


def _add_learner(commands_parser: Any) -> None:
    learner = commands_parser.add_parser("learner", help="the policies' online learner (its own consumer group)")
    learner_actions = learner.add_subparsers(dest="action", required=True)
    learner_actions.add_parser("run", help="run the learner's Faust worker")
    learner_actions.add_parser("status", help="the learner's progress: records, checkpoints, updates")
    learner.set_defaults(handler=cmd_learner)


def _add_simulate(commands_parser: Any) -> None:
    simulate = commands_parser.add_parser("simulate", help="drive simulated users against a running serving API")
    simulate.add_argument("--serve-url", default="http://127.0.0.1:8080")
    simulate.add_argument("--users", type=int, default=1500)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.set_defaults(handler=cmd_simulate)


def _add_up_down(commands_parser: Any) -> None:
    up = commands_parser.add_parser("up", help="broker, topics, the demo's experiments and the five workers, detached")
    up.add_argument("--port", type=int, default=8080, help="the serving API's port")
    up.add_argument(
        "--store", choices=["sqlite", "postgres"], default="sqlite",
        help="the aggregator's state: SQLite, or PostgreSQL (TANDEM_POSTGRES_DSN, else an embedded server)",
    )
    up.set_defaults(handler=cmd_up)
    down = commands_parser.add_parser("down", help="stop what `tandem up` started")
    down.set_defaults(handler=cmd_down)


def _add_serve(commands_parser: Any) -> None:
    serve = commands_parser.add_parser("serve", help="the serving API (personalization stack)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--feature-reads", choices=("auto", "inline", "thread"), default="auto",
                       help="read Feast on the event loop or in a reader thread (auto: inline for SQLite)")
    serve.add_argument("--max-pending", type=int, default=None,
                       help="decisions and exposures buffered while the broker does not acknowledge them "
                            "(default 100000); past it they are counted as overflowed (/metrics)")
    serve.add_argument("--spool-dir", type=Path, default=None,
                       help="the write-ahead spool of answered decisions and exposures not yet confirmed by "
                            "the broker, sent again after a crash (default <state_dir>/serving-spool/<port>)")
    serve.add_argument("--no-spool", action="store_true",
                       help="no spool: a killed process loses the records the broker has not yet acknowledged")
    serve.add_argument("--spool-fsync-interval", type=float, default=None, metavar="SECONDS",
                       help="fsync the spool at most this often (default never: a killed process loses "
                            "nothing, a machine crash may lose the unsynced tail)")
    serve.set_defaults(handler=cmd_serve)


def _add_evaluate_policy(commands_parser: Any) -> None:
    evaluate = commands_parser.add_parser(
        "evaluate-policy", help="off-policy estimates of a candidate policy's value on the decisions log"
    )
    evaluate.add_argument("policy", help="a policy name: uniform, popularity, epsilon_greedy, softmax, linucb, ...")
    evaluate.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a constructor parameter")
    evaluate.add_argument("--from-snapshot", action="store_true", help="the newest snapshot on the models topic")
    evaluate.add_argument("--logged-policy", default=None, help="only decisions this policy made")
    evaluate.set_defaults(handler=cmd_evaluate_policy)


def _add_report(commands_parser: Any) -> None:
    report = commands_parser.add_parser("report", help="an experiment's report from the experiment-metrics topic")
    report.add_argument("experiment", nargs="?", help="the experiment (optional with --calibration)")
    report.add_argument("--calibration", action="store_true",
                        help="the history of the evaluation gate's predicted against the realized effects")
    report.add_argument("--out", default=None, help="directory for the JSON and PNGs (default: <state dir>/reports)")
    report.set_defaults(handler=cmd_report)


def _add_stats(commands_parser: Any) -> None:
    stats = commands_parser.add_parser("stats", help="statistics from a JSON file of sufficient statistics")
    stats.add_argument("file", help="a JSON file, or - for standard input")
    stats.set_defaults(handler=cmd_stats)


def _add_chaos(commands_parser: Any) -> None:
    chaos = commands_parser.add_parser(
        "chaos", help="crashes, broker outage, hostile input, HTTP fuzz, blast radius and security checks on "
                      "the embedded stack; writes bench/chaos.json")
    chaos.add_argument("--scenario", action="append", default=None,
                       help="one scenario (repeatable; default: every one): crashes, broker_outage, "
                            "hostile_input, http_fuzz, blast_radius, security")
    chaos.add_argument("--quick", action="store_true", help="a short seeded version of each scenario")
    chaos.add_argument("--seed", type=int, default=20)
    chaos.add_argument("--work-dir", default=None, help="where the scenarios' brokers and logs go "
                                                      "(default: <state dir>/chaos)")
    chaos.add_argument("--out", default="bench/chaos.json", help="the report")
    chaos.set_defaults(handler=cmd_chaos)


def cmd_chaos(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from infra.chaos.runner import run_scenarios

    work_dir = Path(args.work_dir) if args.work_dir else settings.state_dir / "chaos"
    report = run_scenarios(args.scenario, work_dir=work_dir, seed=args.seed, quick=args.quick,
                           report_path=Path(args.out))
    for result in report["scenarios"]:
        print(f"{result['scenario']:14} {'ok' if result['ok'] else 'NOT OK':6} {result['done']}")
    print(f"wrote {args.out}")
    return 0 if report["ok"] else 1


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from infra.demo.run import DemoOptions, run_demo

    return run_demo(settings=settings, options=DemoOptions(users=args.users, seed=args.seed, out_dir=Path(args.out)))


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    from streams import worker as commands

    if args.action == "run":
        return commands.run_features(settings)
    if args.action == "get":
        print(json.dumps(commands.get_features(settings, args.user_id), indent=2, default=str))
        return 0
    print(json.dumps(commands.features_status(settings), indent=2, default=str))
    return 0


def cmd_learner(args: argparse.Namespace, settings: Settings) -> int:
    from streams import worker as commands

    if args.action == "run":
        return commands.run_learner(settings)
    print(json.dumps(commands.learner_status(settings), indent=2, default=str))
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from infra.simulation.driver import simulate

    return simulate(settings, serve_url=args.serve_url, users=args.users, seed=args.seed)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.demo.run import start_detached

    return start_detached(settings=settings, port=args.port, store=args.store)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from infra.demo.run import postgres_data_dir
    from infra.demo.supervisor import stop_recorded
    from infra.kafka import broker

    for name in stop_recorded(settings.state_dir):
        print(f"stopped {name}")
    if (postgres_data_dir(settings) / "postmaster.pid").exists():
        from infra.postgres import EmbeddedPostgres

        EmbeddedPostgres(data_dir=postgres_data_dir(settings)).stop()
        print("stopped postgres")
    if broker.daemon_down(state_file=settings.broker_state_file):
        print("stopped the broker")
    return 0


def cmd_experiments(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "apply":
        return _apply_spec(args, settings)
    if args.action == "surrogate":
        from experiments.spec import parse_duration
        from infra.cli.surrogate import fit_from_topics, follow_topics

        if args.follow:
            if not args.out:
                raise SystemExit("tandem experiments surrogate --follow needs --out, the file each refit is written to")
            return follow_topics(settings, out=args.out, every_ms=parse_duration(args.every),
                                 min_rows=args.min_rows, idle_exit_s=args.idle_exit,
                                 allowed_lateness_ms=parse_duration(args.allowed_lateness))
        return fit_from_topics(settings, out=args.out)
    if args.action == "list":
        return _list_specs(settings)
    if args.action == "aggregate":
        return _aggregate(args, settings)
    if args.action == "allocate":
        return _allocate(args, settings)
    return _print_metrics(args.experiment, settings)


def _apply_spec(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import time
    from pathlib import Path

    from experiments.admission import admit
    from experiments.errors import InvalidSpec
    from experiments.lifecycle import apply_spec, publish_spec, read_specs
    from experiments.ope.gate import GateRule
    from experiments.spec import load_spec
    from experiments.surfaces import load_surfaces
    from experiments.surrogate import Surrogate
    from infra.cli.gate import gate
    from infra.kafka.topics import apply_topics

    path = args.file
    spec = load_spec(path)
    apply_topics(settings)
    live = read_specs(settings)
    try:
        admit(spec, live=[s for s in live.values() if s.status != "draft"], surfaces=load_surfaces())
    except InvalidSpec as exc:
        raise InvalidSpec(f"{path}: {exc}") from None
    who, at = getpass.getuser(), int(time.time() * 1000)
    surrogate = (Surrogate.from_state(json.loads(Path(args.surrogate).read_text(encoding="utf-8")))
                 if args.surrogate else None)
    # No variant serves a policy without a passing off-policy evaluation, unless --no-gate (recorded).
    evaluation = gate(settings, spec, surrogate=surrogate, rule=GateRule(margin=args.gate_margin),
                      no_gate=args.no_gate, who=who, at=at)
    spec = spec.model_copy(update={"evaluation": evaluation})
    # Through the lifecycle: a new version with who and when, refused if it changes a running one's variants.
    spec = apply_spec(live.get(spec.id), spec, who=who, at=at)
    publish_spec(settings, spec)
    gated = f", evaluation gate {evaluation.gate}" if evaluation is not None else ""
    print(f"published experiment {spec.id} version {len(spec.history)}, {spec.status} "
          f"({len(spec.variants)} variants, {len(spec.metrics)} metrics{gated})")
    return 0


def _list_specs(settings: Settings) -> int:
    from experiments.lifecycle import read_specs

    for spec in read_specs(settings).values():
        variants = ", ".join(f"{v.name}={v.weight:g}:{'+'.join(sorted(v.params)) or 'defaults'}" for v in spec.variants)
        layer = spec.layer.name if spec.layer else "-"
        print(f"{spec.id:28} {spec.status:8} v{len(spec.history):<3} {spec.kind:8} surface {spec.surface:10} "
              f"layer {layer:16} variants [{variants}]  "
              f"metrics [{', '.join(m.name for m in spec.metrics)}]")
    return 0


def _aggregate(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.aggregation.aggregator import Aggregator
    from experiments.spec import parse_duration

    aggregator = Aggregator(
        settings=settings,
        allowed_lateness_ms=parse_duration(args.allowed_lateness),
        resolution_ms=parse_duration(args.resolution),
        dedupe_span_ms=None if args.dedupe_span is None else parse_duration(args.dedupe_span),
        item_sets=args.item_sets,
        crash_after_commits=args.crash_after_commits,
        metrics_port=args.metrics_port,
    )
    signal.signal(signal.SIGTERM, lambda *_: aggregator.stop())
    signal.signal(signal.SIGINT, lambda *_: aggregator.stop())
    stats = aggregator.run(idle_exit_s=args.idle_exit)
    print(json.dumps(stats.__dict__), file=sys.stderr)
    return 0


def _allocate(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from experiments.allocation import allocate_once

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while True:
        for version in allocate_once(settings):
            period = version.periods[-1]
            print(f"{version.id}: period {len(version.periods)} from {period.start}: "
                  + ", ".join(f"{k} {w:.3f}" for k, w in sorted(period.weights.items())), flush=True)
        if args.once or stop.wait(args.interval):
            return 0


def _print_metrics(experiment: str, settings: Settings) -> int:
    from experiments.aggregation.stats import merge_partials
    from infra.kafka.topic_reader import read_topic
    from infra.kafka.topics import EXPERIMENT_METRICS

    # Every aggregator process publishes the partials of its partitions: sum the newest of each.
    topic = settings.topic(EXPERIMENT_METRICS)
    records = merge_partials([
        json.loads(record.value)
        for record in read_topic(settings, topic)
        if record.value and record.key and record.key.decode().startswith(f"{experiment}/")
    ])
    if not records:
        print(f"no metrics for experiment {experiment!r} on {topic}", file=sys.stderr)
        return 1
    for record in records:
        print(json.dumps(record))
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from experiments.stats.cli import run_stats

    return run_stats(args.file)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from experiments.report.owner import run_report

    if args.calibration:
        from experiments.lifecycle import read_decisions
        from experiments.report.calibration import calibration_table

        print(calibration_table((r.decided_at, r.calibration) for r in read_decisions(settings)))
        if args.experiment is None:
            return 0
        print()
    if args.experiment is None:
        print("tandem report: an EXPERIMENT is required (or --calibration)", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else settings.state_dir / "reports"
    files = run_report(settings=settings, experiment=args.experiment, out_dir=out_dir)
    print(files.table)
    _print_bandit_report(settings, args.experiment)
    print(f"\nwrote {files.json_path}, {files.lift_png}, {files.lift_over_time_png}")
    return 0


def _print_bandit_report(settings: Settings, experiment: str) -> None:
    """A bandit experiment's weights moved: its period-weighted effects and per-period SRM."""
    from experiments.report.bandit import bandit_report_from_topics, render
    from experiments.report.owner import read_spec

    spec = read_spec(settings, experiment)
    if spec.kind == "bandit":
        report = bandit_report_from_topics(settings, spec)
        if report is not None:
            print("\n" + render(report))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from streams.serving import ServingConfig
    from streams.serving.commands import serve

    bounded = {} if args.max_pending is None else {"max_pending": args.max_pending}
    return serve(settings, host=args.host, port=args.port, spool=not args.no_spool,
                 config=ServingConfig(feature_reads=args.feature_reads, spool_dir=args.spool_dir,
                                      spool_fsync_interval_s=args.spool_fsync_interval, **bounded))


def cmd_evaluate_policy(args: argparse.Namespace, settings: Settings) -> int:
    from infra.cli.evaluate_policy import evaluate_policy, print_evaluation

    params: dict[str, Any] = {}
    for item in args.param:
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    print_evaluation(
        evaluate_policy(
            settings, name=args.policy, params=params, from_snapshot=args.from_snapshot,
            logged_policy=args.logged_policy,
        )
    )
    return 0
