"""Oracles of the chaos scenarios: what each worker's output must be, computed from the topics.

Each one replays the records the run left on the topics through the same pure core the worker
uses (the aggregation store, the feature state, the checkpointed learner), in one process and
without interruption, and compares the worker's output with it: a crash that lost or repeated
a record shows as a difference.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from infra.kafka.topic_reader import newest_per_key, read_topic
from infra.kafka.topics import DECISIONS, EVENTS, EXPERIMENT_METRICS, EXPERIMENTS, EXPOSURES
from infra.settings import Settings

LATENESS_MS = 30 * 60 * 1000  # the aggregator's --allowed-lateness 30m


def differences(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> list[str]:
    """``key.field: actual != expected`` for every difference, missing and unexpected keys included."""
    found = [f"{key}: missing" for key in expected.keys() - actual.keys()]
    found += [f"{key}: unexpected" for key in actual.keys() - expected.keys()]
    for key in expected.keys() & actual.keys():
        found += [f"{key}.{name}: {actual[key].get(name)!r} != expected {value!r}"
                  for name, value in expected[key].items() if actual[key].get(name) != value]
    return sorted(found)


# The aggregator.


def aggregation_oracle(settings: Settings, experiment: str, *, keep: Callable[[Any], bool] = lambda record: True,
                       ) -> tuple[dict[str, dict[str, Any]], int]:
    """The aggregation core applied once to the topics' records (those ``keep`` accepts) merged in event
    time (the log has no late records, so the order of partitions cannot change the figures); with its
    dead-letter count."""
    from experiments.aggregation import AggregationStore, SourceRecord

    topics = {role: settings.topic(topic) for role, topic in
              (("events", EVENTS), ("exposures", EXPOSURES), ("experiments", EXPERIMENTS))}
    timed = []
    for role in ("experiments", "exposures", "events"):
        for record in read_topic(settings, topics[role]):
            if keep(record):
                timed.append((_ts(record.value) if role != "experiments" else 0, role, record))
    timed.sort(key=lambda item: item[0])
    with AggregationStore(":memory:", allowed_lateness_ms=LATENESS_MS, topics=topics) as store:
        result = store.apply_batch(
            SourceRecord(record.topic, record.partition, record.offset, record.key, record.value)
            for _, _, record in timed)
        return comparable_metrics(store.metric_records(experiment)), len(result.dead_letters)


def _ts(value: bytes | None) -> int:
    try:
        ts = json.loads(value or b"").get("ts", 0)
        return ts if isinstance(ts, int) else 0
    except (ValueError, AttributeError):
        return 0


def comparable_metrics(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metric records by key, without what depends on how records were spread over partitions."""
    return {f"{r['experiment']}/{r['variant']}/{r['metric']}":
            {k: v for k, v in r.items() if k not in ("record_id", "watermark_ts", "partition")} for r in records}


def published_metrics(settings: Settings, experiment: str) -> dict[str, dict[str, Any]]:
    """The experiment's figures as readers see them: the newest partial per key, summed."""
    from experiments.aggregation.stats import merge_partials

    newest = newest_per_key(read_topic(settings, settings.topic(EXPERIMENT_METRICS)))
    partials = [json.loads(r.value) for r in newest.values()
                if r.value and r.key and r.key.decode().startswith(f"{experiment}/")]
    return comparable_metrics(merge_partials(partials))


def aggregator_applied(settings: Settings) -> int:
    """Records the aggregator stored with its state (the sum of its stored offsets); 0 before the first."""
    path = settings.state_dir / "experiments.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT COALESCE(SUM(next_offset), 0) FROM agg_offsets").fetchone()[0])
    except sqlite3.Error:
        return 0


# The archiver.


def archive_check(settings: Settings) -> dict[str, Any]:
    """Per topic: valid records on the topic, archived, archived twice, missing from the archive."""
    from experiments.batch.archive import RECORD_ID, Archive
    from streams.events import Decision, Exposure, ListeningEvent, decode

    schemas: dict[str, Any] = {"events": ListeningEvent, "exposures": Exposure, "decisions": Decision}
    topics = {"events": EVENTS, "exposures": EXPOSURES, "decisions": DECISIONS}
    archive = Archive(settings.archive)
    figures: dict[str, Any] = {}
    for role, schema in schemas.items():
        published = set()
        for record in read_topic(settings, settings.topic(topics[role])):
            try:
                published.add(getattr(decode(record.value, schema), RECORD_ID[role]))
            except ValueError:
                continue  # a bad record: the archiver dead-letters it
        ids: Counter[str] = Counter()
        if archive.files(role):
            ids = Counter(archive.read_table(role).column(RECORD_ID[role]).to_pylist())
        figures[role] = {"on_topic": len(published), "archived": sum(ids.values()),
                         "twice": sum(1 for count in ids.values() if count > 1),
                         "missing": len(published - set(ids)), "unknown": len(set(ids) - published)}
    return figures


def archived_files(settings: Settings) -> int:
    from experiments.batch.archive import RECORD_ID, Archive

    archive = Archive(settings.archive)
    return sum(len(archive.files(topic)) for topic in RECORD_ID)


# The features worker.


def features_oracle(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every user's features from the pure feature state applied in topic order (a user's records
    are on one partition, in the order they were published)."""
    from streams.events import decode_event
    from streams.features import UserFeatureState

    states: dict[str, UserFeatureState] = {}
    for record in read_topic(settings, settings.topic(EVENTS)):
        try:
            event = decode_event(record.value)
        except ValueError:
            continue
        states.setdefault(event.user_id, UserFeatureState(event.user_id)).apply(event)
    return {user: state.features() for user, state in states.items()}


def online_features(settings: Settings, users: list[str]) -> dict[str, dict[str, Any]]:
    from feature_store import FeatureStoreClient, FeatureStoreSettings
    from streams.features import default_features

    with FeatureStoreClient(settings=FeatureStoreSettings(repo_path=settings.feast_dir),
                            defaults=default_features()) as store:
        return dict(store.read(users))


# The learner.


def learner_oracle(settings: Settings) -> tuple[Any, dict[tuple[str, int], int]]:
    """An uninterrupted learner fed every input record, partition by partition in offset order,
    and the end offset of each input partition."""
    from streams.learning import CheckpointedLearner, OnlineLearner
    from streams.policies import make_policy

    learner = CheckpointedLearner(OnlineLearner(policy_factory=lambda name: make_policy(name, seed=None)),
                                  decisions_topic=settings.topic(DECISIONS))
    ends: dict[tuple[str, int], int] = {}
    for topic in (DECISIONS, EVENTS):
        for record in read_topic(settings, settings.topic(topic)):
            learner.offer(record.topic, record.partition, record.offset, record.value)
            ends[(record.topic, record.partition)] = record.offset + 1
    learner.advance()
    return learner, ends


def comparable_learner_state(state: dict[str, Any]) -> dict[str, Any]:
    """A learner state without what may differ between two exact runs: the policies' random generators
    (the worker's are unseeded) and the order of the joiner's buffers (it follows arrival order)."""
    joiner, policies = state["joiner"], state["policies"]
    return {
        **state,
        "policies": {name: {k: v for k, v in policy.items() if k != "rng"} for name, policy in policies.items()},
        "joiner": {**joiner, "decisions": sorted(joiner["decisions"], key=lambda d: d["decision_id"]),
                   "events": sorted(joiner["events"], key=lambda e: e[0]["event_id"])},
        "newest": sorted(state["newest"]),
    }
