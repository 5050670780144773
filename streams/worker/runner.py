"""Running a personalization worker in this process: the features worker (the feature store,
then Faust) or, with ``--role learner``, the learner (``streams.worker.learner_app``).

    python -m streams.worker [--role features|learner] [--flush-records N] [--flush-ms T]

Settings come from ``TANDEM_*`` variables. Faust's web server stays off (it would listen on every interface).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from infra.settings import Settings, load_settings
from infra.topics import apply_topics
from streams.features import default_features

logger = logging.getLogger(__name__)


def open_feature_store(settings: Settings, *, check_older: bool = True) -> Any:
    """A started ``FeatureStoreClient`` on ``settings.feast_dir`` with the feature schema (for
    readers; the worker writes through ``streams.worker.feast_process``)."""
    from feature_store import FeatureStoreClient, FeatureStoreSettings

    client = FeatureStoreClient(
        settings=FeatureStoreSettings(repo_path=settings.feast_dir, drop_older_writes=check_older),
        defaults=default_features(),
    )
    client.start()
    return client


def run_worker(settings: Settings, *, loglevel: str = "warning", **app_options: Any) -> int:
    """Provision topics, start the feature-store writer process, run the app until stopped; the exit code."""
    from streams.worker.app import make_app
    from streams.worker.feast_process import ProcessFeatureWriter

    apply_topics(settings)
    store = ProcessFeatureWriter(settings.feast_dir)
    try:
        return _run(make_app(settings, feature_store=store, **app_options), loglevel)
    finally:
        store.close()


def run_learner(settings: Settings, *, loglevel: str = "warning", **app_options: Any) -> int:
    """Provision topics, restore or warm-start the learner, run its app until stopped; the exit code."""
    from streams.worker.learner_app import make_learner_app

    apply_topics(settings)
    return _run(make_learner_app(settings, **app_options), loglevel)


def _run(app: Any, loglevel: str) -> int:
    import faust

    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


#: Options of the features worker only, with their defaults; the learner refuses them.
FEATURES_ONLY = {"flush_records": 1000, "flush_ms": 100.0, "persist_interval": None, "store": None,
                 "changelog_batches": False}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("features", "learner"), default="features")
    parser.add_argument("--status-interval", type=float, default=1.0, help="seconds between status files")
    parser.add_argument("--commit-interval", type=float, default=None, help="seconds between offset commits")
    parser.add_argument("--app-name", default=None,
                        help="app id and consumer group, after the topic prefix (a second, independent app)")
    parser.add_argument("--loglevel", default="warning")
    features = parser.add_argument_group("features worker only")
    features.add_argument("--flush-records", type=int, default=None, help="default 1000")
    features.add_argument("--flush-ms", type=float, default=None, help="default 100")
    features.add_argument("--persist-interval", type=float, default=None,
                          help="seconds between table writes of the changed user states")
    features.add_argument("--store", choices=("rocksdb://", "memory://"), default=None)
    features.add_argument("--changelog-batches", action="store_true", default=None,
                          help="let the producer batch records (faster; wrong end offsets on the embedded broker)")
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in FEATURES_ONLY if getattr(args, name) is not None]
    named = {"app_name": args.app_name} if args.app_name else {}
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
