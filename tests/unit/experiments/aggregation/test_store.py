"""The store, on SQLite and on PostgreSQL (one suite over both): batches of any size with crashes
and replays equal one clean pass; a process that lost a partition cannot commit it."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.aggregation import AggregationStore, SourceRecord, changelog
from experiments.aggregation.backends import connect
from experiments.errors import FencedWrite, StoreError
from experiments.lifecycle import add_batch_metric, apply_spec, transition
from experiments.spec import Metric, parse_spec, spec_to_json
from streams.events import Exposure, ListeningEvent, encode

T0 = 1_767_225_600_000
S = 1000
EVENTS, EXPOSURES, EXPERIMENTS = "tandem.events", "tandem.exposures", "tandem.experiments"

SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": T0, "end": T0 + 10_000 * S, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "plays", "window": {"length": "10s"}, "covariate": {"length": "5s"}},
        {"name": "ret", "role": "guardrail", "kind": "proportion", "direction": "increase",
         "measure": "active", "window": {"delay": "10s", "length": "5s"}, "margin": 0.01},
        {"name": "skip_rate", "role": "guardrail", "kind": "ratio", "direction": "decrease",
         "numerator": "skips", "denominator": "events", "window": {"length": "10s"}, "margin": 0.05},
    ],
})
RECORD_FIELDS = [
    "v", "record_id", "experiment", "variant", "metric", "kind", "role", "n", "sum", "sum_sq",
    "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross_sum",
    "exposed", "in_progress", "watermark_ts", "late_records", "multi_variant_users",
]


def make_log(seed: int, size: int = 400) -> list[SourceRecord]:
    """A spec, then events on two partitions and exposures, out of order, with junk and duplicates."""
    rng = random.Random(seed)
    offsets = {EVENTS: [0, 0], EXPOSURES: [0], EXPERIMENTS: [0]}

    def record(topic: str, partition: int, key: bytes | None, value: bytes | None) -> SourceRecord:
        offset = offsets[topic][partition]
        offsets[topic][partition] += 1
        return SourceRecord(topic, partition, offset, key, value)

    log = [record(EXPERIMENTS, 0, b"exp", spec_to_json(SPEC))]
    sent: list[SourceRecord] = []
    for i in range(size):
        user = f"u{rng.randrange(12)}"
        ts = T0 + max(0, i * 400 + rng.randrange(-12_000, 2_000))
        roll = rng.random()
        if roll < 0.05 and sent:
            original = rng.choice(sent)  # a producer retry: same id, same partition, new offset
            log.append(record(original.topic, original.partition, original.key, original.value))
            continue
        if roll < 0.08:
            log.append(record(EVENTS, rng.randrange(2), b"u", rng.choice([b"{oops", b'{"event_id": 1}', b""])))
            continue
        if roll < 0.25:
            exp = "exp" if rng.random() < 0.95 else "ghost"
            value = encode(Exposure(exposure_id=f"x{i}", experiment=exp, variant=rng.choice("ab"),
                                    user_id=user, ts=ts))
            sent.append(record(EXPOSURES, 0, user.encode(), value))
        else:
            etype = rng.choice(["play", "play", "skip", "session_start"])
            value = encode(ListeningEvent(event_id=f"e{i}", user_id=user, ts=ts, type=etype,
                                          item_id=None if etype == "session_start" else "i1"))
            sent.append(record(EVENTS, rng.randrange(2), user.encode(), value))
        log.append(sent[-1])
    return log


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def new_target(request: pytest.FixtureRequest) -> Callable[[], str | Path]:
    """Makes an empty database of the store under test: a SQLite file, or a PostgreSQL database
    on the session's server."""
    if request.param == "postgresql":
        return request.getfixturevalue("new_postgres_database")  # type: ignore[no-any-return]
    return lambda: Path(tempfile.mkdtemp()) / "s.db"


def open_store(target: str | Path) -> AggregationStore:
    return AggregationStore(target, allowed_lateness_ms=1500)


def snapshot(store: AggregationStore, target: str | Path) -> tuple:
    """What the database holds: each partition's state as a process claiming it would load it
    (its changelog replayed), the watermarks and the offsets; and the store's records."""
    conn, _ = connect(target)
    try:
        parts = conn.execute("SELECT part, watermark FROM agg_parts ORDER BY part").fetchall()
        states = {}
        for part, watermark in parts:
            restored = changelog.replay(payload for _, payload in conn.execute(
                "SELECT seq, payload FROM agg_state_log WHERE part = ? ORDER BY seq", (part,)).fetchall())
            states[part] = (
                watermark, restored.events, restored.buckets, restored.anchors,
                {key: (s.n, s.terms()) for key, s in restored.stats.items()}, restored.late, restored.partitions,
            )
        offsets = sorted(conn.execute("SELECT * FROM agg_offsets").fetchall())
    finally:
        conn.close()
    return store.metric_records("exp"), store.stored_offsets(), offsets, states


def run_once(log: list[SourceRecord], path: Path) -> tuple:
    store = open_store(path)
    store.declare_partitions([(EVENTS, 0), (EVENTS, 1), (EXPOSURES, 0)])
    letters = {d.dead_letter_id: d.error for d in store.apply_batch(log).dead_letters}
    result = snapshot(store, path), letters
    store.close()
    return result


def test_records_as_kafka_python_polls_them_apply_as_source_records(tmp_path):
    from kafka.consumer.fetcher import ConsumerRecord  # what the aggregator hands over, not copied

    log = make_log(7)
    polled = [ConsumerRecord(r.topic, r.partition, None, r.offset, 0, 0, r.key, r.value, [], None, -1, -1, -1)
              for r in log]
    assert run_once(polled, tmp_path / "polled.db") == run_once(log, tmp_path / "copied.db")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), plan=st.lists(st.tuples(st.integers(1, 120), st.sampled_from(
    ["commit", "commit", "crash_before_commit", "crash_after_commit", "replay_last"])), min_size=1))
def test_batches_with_crashes_and_replays_equal_one_pass(new_target, seed, plan):
    log = make_log(seed)
    expected, expected_letters = run_once(log, new_target())
    path = new_target()
    store = open_store(path)
    store.declare_partitions([(EVENTS, 0), (EVENTS, 1), (EXPOSURES, 0)])
    letters: dict[str, str] = {}
    position, last_start, step = 0, 0, 0
    while position < len(log):
        size, action = plan[step % len(plan)]
        step += 1
        batch = log[position:position + size]
        if action == "crash_before_commit":  # the process died while applying: nothing stored
            store.close()
            store = open_store(path)  # ... and the restarted one gets the same records
        letters.update((d.dead_letter_id, d.error) for d in store.apply_batch(batch).dead_letters)
        last_start, position = position, position + len(batch)
        if action in ("crash_after_commit", "replay_last"):
            store.close()
            store = open_store(path)  # the consumer seeks to stored offsets, sees old records again
            replay = store.apply_batch(log[last_start:position])
            assert replay.applied == 0 and replay.skipped == len(batch) and not replay.dead_letters
    assert snapshot(store, path) == expected
    assert letters == expected_letters
    store.close()


def test_failed_commit_breaks_the_store_and_a_reopen_replays(new_target, monkeypatch):
    log = make_log(7, size=200)
    expected, _ = run_once(log, new_target())
    path = new_target()
    store = open_store(path)
    store.declare_partitions([(EVENTS, 0), (EVENTS, 1), (EXPOSURES, 0)])
    store.apply_batch(log[:100])

    class FailingConnection:
        def __init__(self, conn):
            self._conn = conn

        def __getattr__(self, name):
            return getattr(self._conn, name)

        def executemany(self, statement, rows):
            if "agg_offsets" in statement:
                raise store._db_errors[0]("disk I/O error")
            return self._conn.executemany(statement, rows)

    monkeypatch.setattr(store, "_conn", FailingConnection(store._conn))
    with pytest.raises(StoreError, match="nothing of this batch was stored"):
        store.apply_batch(log[100:150])
    with pytest.raises(StoreError, match="reopen"):
        store.apply_batch(log[150:])
    store.close()
    store = open_store(path)
    store.apply_batch(log)  # replay everything: what was stored is skipped
    assert snapshot(store, path) == expected
    store.close()


def apply(store: AggregationStore, *records: SourceRecord):
    return store.apply_batch(list(records))


def test_dead_letters_name_the_reason(new_target):
    store = open_store(new_target())
    event = ListeningEvent(event_id="e1", user_id="u1", ts=T0, type="play", item_id="i")
    result = apply(
        store,
        SourceRecord(EXPERIMENTS, 0, 0, b"exp", spec_to_json(SPEC)),
        SourceRecord(EVENTS, 0, 0, b"u1", b'{"event_id": "e1", "user_id": '),
        SourceRecord(EVENTS, 0, 1, b"u1", b'{"event_id": "e1", "user_id": "u1", "ts": "soon", "type": "play"}'),
        SourceRecord(EXPOSURES, 0, 0, b"u1", encode(Exposure(exposure_id="x1", experiment="ghost",
                                                              variant="a", user_id="u1", ts=T0))),
        SourceRecord(EXPOSURES, 0, 1, b"u1", encode(Exposure(exposure_id="x2", experiment="exp",
                                                              variant="c", user_id="u1", ts=T0))),
        SourceRecord(EXPERIMENTS, 0, 1, b"other", spec_to_json(SPEC)),
        SourceRecord(EXPERIMENTS, 0, 2, b"exp", b'{"id": "exp"}'),
        SourceRecord("tandem.other", 0, 0, None, b"{}"),
        SourceRecord(EVENTS, 0, 2, b"u1", encode(event)),
    )
    errors = [(d.source_topic, d.offset, d.error) for d in result.dead_letters]
    assert [e[:2] for e in errors] == [
        (EVENTS, 0), (EVENTS, 1), (EXPOSURES, 0), (EXPOSURES, 1), (EXPERIMENTS, 1), (EXPERIMENTS, 2),
        ("tandem.other", 0),
    ]
    assert "malformed JSON" in errors[0][2]
    assert "ts: Input should be a valid integer" in errors[1][2]
    assert errors[2][2] == "unknown experiment 'ghost'"
    assert "variant: 'c' is not a variant" in errors[3][2]
    assert "does not match the spec id" in errors[4][2]
    assert "experiment spec:" in errors[5][2] and "salt: Field required" in errors[5][2]
    assert "not an input" in errors[6][2]
    assert all(d.stage == "experiments.aggregation" for d in result.dead_letters)
    assert result.dead_letters[0].raw_value() == b'{"event_id": "e1", "user_id": '
    assert result.applied == 9
    store.close()


def test_late_records_are_dead_letters_and_counted(new_target):
    store = AggregationStore(new_target(), allowed_lateness_ms=1000)
    store.register_spec(SPEC)
    store.declare_partitions([(EVENTS, 0), (EXPOSURES, 0)])

    def event(i: int, user: str, ts: int, etype: str = "play") -> SourceRecord:
        value = encode(ListeningEvent(event_id=f"e{i}", user_id=user, ts=ts, type=etype, item_id="i"))
        return SourceRecord(EVENTS, 0, i, user.encode(), value)

    def exposure(i: int, user: str, ts: int) -> SourceRecord:
        value = encode(Exposure(exposure_id=f"x{i}", experiment="exp", variant="a", user_id=user, ts=ts))
        return SourceRecord(EXPOSURES, 0, i, user.encode(), value)

    result = apply(
        store,
        exposure(0, "u1", T0),
        event(0, "u1", T0 + 1 * S),
        event(1, "u2", T0 + 40 * S),  # the events partition moves far ahead
        exposure(1, "u2", T0 + 30 * S),  # the watermark is now T0 + 30 s: u1's windows are closed
        event(2, "u1", T0 + 2 * S),  # inside u1's closed plays window: late
        event(3, "u1", T0 + 20 * S),  # old, but after every window of u1: accepted
        exposure(2, "u3", T0 + 1 * S),  # would anchor windows that are already closed: late
    )
    reasons = [d.error for d in result.dead_letters]
    assert len(reasons) == 2 and all(r.startswith("late:") for r in reasons)
    records = {(r["variant"], r["metric"]): r for r in store.metric_records("exp")}
    plays = records[("a", "plays")]
    assert (plays["n"], plays["sum"], plays["late_records"], plays["exposed"], plays["in_progress"]) == (
        1, 1.0, 2, 2, 1)
    assert plays["watermark_ts"] == T0 + 30 * S
    # what the aggregator's /metrics counts: the late records, and each user's metric window closed
    assert result.late == {"exp": 2}
    assert result.window_closes == {"exp": sum(r["n"] for r in records.values())} and plays["n"] > 0
    store.close()


def test_metric_records_have_the_documented_format(new_target):
    store = open_store(new_target())
    store.declare_partitions([(EVENTS, 0)])  # the store owns input partition 0
    changed = store.register_spec(SPEC)
    assert len(changed) == 6  # every (variant, metric) of partition 0 is new: published as partials
    for record in changed:
        assert list(record) == [*RECORD_FIELDS, "partition", "terms"] and record["partition"] == 0
        assert record["record_id"].startswith(f"exp/{record['variant']}/{record['metric']}/0@0:")
        assert set(record["terms"]) == {"sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum",
                                        "pre_sum_sq", "pre_cross_sum"}
    for record in store.metric_records("exp"):  # the totals, as a reader summing the partials gets them
        assert list(record) == RECORD_FIELDS
        assert record["record_id"].startswith(f"exp/{record['variant']}/{record['metric']}@0:")
        json.dumps(record, allow_nan=False)
    kinds = {r["metric"]: (r["den_sum"] is None, r["pre_sum"] is None) for r in store.metric_records("exp")}
    assert kinds == {"plays": (True, False), "ret": (True, True), "skip_rate": (False, True)}
    assert store.metric_records("nope") == []
    assert store.register_spec(SPEC) == []  # nothing changed, nothing to publish
    store.close()


def test_specs_survive_a_restart_and_running_specs_cannot_change_shape(new_target):
    target = new_target()
    store = open_store(target)
    store.register_spec(SPEC)
    store.close()
    store = open_store(target)
    assert store.experiments() == ["exp"] and store.spec("exp") == SPEC
    longer = SPEC.model_copy(update={"end": SPEC.end + S})
    store.register_spec(longer)  # extending an experiment is fine
    changed = json.loads(spec_to_json(SPEC))
    changed["metrics"][0]["window"]["length"] = 20_000
    result = apply(store, SourceRecord(EXPERIMENTS, 0, 0, b"exp", json.dumps(changed).encode()))
    assert "metrics: cannot change while experiment 'exp' runs" in result.dead_letters[0].error
    assert store.spec("exp") == longer
    store.close()


def test_lifecycle_versions_and_batch_only_metrics_change_no_figure(new_target):
    """A version that adds a batch-only metric, then one that stops the experiment, mid-log: both are
    accepted (no dead letter), the batch metric gets no record, and every figure equals the plain log's."""
    log = make_log(11, size=300)
    (plain, *_), plain_letters = run_once(log, new_target())
    batch_metric = Metric.model_validate({"name": "likes_10s", "role": "success", "kind": "mean",
                                          "direction": "increase", "measure": "likes", "window": {"length": "10s"},
                                          "source": "batch"})
    added = add_batch_metric(apply_spec(None, SPEC, who="a", at=T0), batch_metric, who="a", at=T0 + 1)
    stopped = transition(added, to="stopped", who="monitor", at=T0 + 2, why="guardrail")
    middle = len(log) // 2
    versions = [SourceRecord(EXPERIMENTS, 0, 1 + i, b"exp", spec_to_json(v)) for i, v in enumerate([added, stopped])]
    (figures, *_), letters = run_once(log[:middle] + versions + log[middle:], new_target())
    assert letters == plain_letters

    def values(records: list[dict]) -> list[tuple]:
        return sorted((r["variant"], r["metric"], r["n"], r["sum"], r["sum_sq"], r["exposed"]) for r in records)

    assert values(figures) == values(plain) and {r["metric"] for r in figures} == {"plays", "ret", "skip_rate"}


def test_a_process_that_lost_a_partition_cannot_commit_it(new_target):
    target = new_target()
    log = make_log(3, size=200)
    first = AggregationStore(target, allowed_lateness_ms=1500, claim_on_demand=False, owner="first")
    first.claim([0, 1])
    first.apply_batch(log[:100])
    second = AggregationStore(target, allowed_lateness_ms=1500, claim_on_demand=False, owner="second")
    second.claim([0])  # the group moved partition 0 to another process, which loaded its state
    stored = snapshot(second, target)[2:]  # offsets and state
    with pytest.raises(FencedWrite, match=r"partitions \[0\]: claimed by another process"):
        first.apply_batch(log[100:])
    assert snapshot(second, target)[2:] == stored  # the fenced commit wrote nothing, not even partition 1
    with pytest.raises(StoreError, match="reopen"):
        first.apply_batch(log[100:])
    result = second.apply_batch(log[100:])  # the new owner goes on from partition 0's stored offsets
    assert result.applied > 0
    assert all(d.partition == 0 or d.source_topic == EXPERIMENTS for d in result.dead_letters)
    first.close()
    second.close()


def test_a_spec_the_aggregator_cannot_fold_is_a_dead_letter_and_the_last_good_one_runs_on(new_target):
    store = AggregationStore(new_target(), allowed_lateness_ms=0, max_pre_period_ms=60 * S)
    apply(store, SourceRecord(EXPERIMENTS, 0, 0, b"exp", spec_to_json(SPEC)))
    too_long = json.loads(spec_to_json(SPEC))
    too_long["description"] = "a new version"
    too_long["metrics"][0]["covariate"]["length"] = 61 * S
    exposure = encode(Exposure(exposure_id="x1", experiment="exp", variant="a", user_id="u1", ts=T0))
    result = apply(
        store,
        SourceRecord(EXPERIMENTS, 0, 1, b"exp", json.dumps(too_long).encode()),
        SourceRecord(EXPOSURES, 0, 0, b"u1", exposure),
    )
    assert [d.offset for d in result.dead_letters] == [1]
    assert "metrics[0].covariate.length: 0.000706019 days is longer than the aggregator keeps" in (
        result.dead_letters[0].error)
    assert store.spec("exp") == SPEC  # the last good version, still aggregated
    assert {r["exposed"] for r in store.metric_records("exp") if r["variant"] == "a"} == {1}
    store.close()


def test_a_spec_setting_a_parameter_its_surface_lacks_is_a_dead_letter_and_the_last_good_one_runs_on(new_target):
    store = AggregationStore(new_target(), allowed_lateness_ms=0)
    apply(store, SourceRecord(EXPERIMENTS, 0, 0, b"exp", spec_to_json(SPEC)))
    unknown = json.loads(spec_to_json(SPEC))
    unknown["description"] = "a new version"
    unknown["variants"][0]["params"] = {"colour": "red"}  # what serving would refuse too
    result = apply(store, SourceRecord(EXPERIMENTS, 0, 1, b"exp", json.dumps(unknown).encode()))
    assert [d.offset for d in result.dead_letters] == [1]
    assert "variants[0].params.colour: not a parameter of surface 'home'" in result.dead_letters[0].error
    assert store.spec("exp") == SPEC
    store.close()


def test_a_batch_republishes_the_records_it_did_not_change_only_once_the_watermark_moved_enough(new_target):
    """Every record carries its partition's watermark; republishing every live experiment's records
    whenever it moved made a batch's cost grow with the live experiments."""
    other = SPEC.model_copy(update={"id": "other", "salt": "o"})
    store = AggregationStore(new_target(), allowed_lateness_ms=0, watermark_republish_ms=60 * S)
    offsets = {EVENTS: 0, EXPOSURES: 0}

    def batch(ts: int, experiment: str) -> list[dict]:
        exposure = Exposure(exposure_id=f"x{ts}", experiment=experiment, variant="a", user_id="u", ts=ts)
        event = ListeningEvent(event_id=f"e{ts}", user_id="u", ts=ts, type="play", item_id="i1")
        records = [SourceRecord(EXPOSURES, 0, offsets[EXPOSURES], b"u", encode(exposure)),
                   SourceRecord(EVENTS, 0, offsets[EVENTS], b"u", encode(event))]
        offsets[EXPOSURES] += 1
        offsets[EVENTS] += 1
        return store.apply_batch(records).metric_records

    try:
        store.register_spec(SPEC)
        store.register_spec(other)
        published = batch(T0, "exp")
        assert {r["experiment"] for r in published} == {"exp", "other"}  # a partition's first records
        published = batch(T0 + 30 * S, "exp")  # only "exp" changed; the watermark moved 30 s
        assert {r["experiment"] for r in published} == {"exp"}
        assert {r["watermark_ts"] for r in published} == {T0 + 30 * S}
        # read to the end: the others get the newest watermark, once
        caught_up = store.publish_watermarks()
        assert {(r["experiment"], r["watermark_ts"]) for r in caught_up} == {("other", T0 + 30 * S)}
        assert store.publish_watermarks() == []
        published = batch(T0 + 100 * S, "exp")  # moved 70 s since every record was published
        assert {(r["experiment"], r["watermark_ts"]) for r in published} == {
            ("exp", T0 + 100 * S), ("other", T0 + 100 * S)}
    finally:
        store.close()


def test_records_republished_for_a_new_watermark_are_those_the_state_computes(new_target):
    """An experiment a batch did not change gets its last records with the new watermark, not
    recomputed: they must equal what its state computes, id and all."""
    other = SPEC.model_copy(update={"id": "other", "salt": "o"})
    store = AggregationStore(new_target(), allowed_lateness_ms=0, watermark_republish_ms=5 * S)
    offsets = {EVENTS: 0, EXPOSURES: 0}

    def batch(ts: int, experiments: list[str]) -> list[dict]:
        records = []
        for user in ("u1", "u2", "u3"):
            for experiment in experiments:
                exposure = Exposure(exposure_id=f"x{ts}{user}{experiment}", experiment=experiment, variant="a",
                                    user_id=user, ts=ts)
                records.append(SourceRecord(EXPOSURES, 0, offsets[EXPOSURES], user.encode(), encode(exposure)))
                offsets[EXPOSURES] += 1
            event = ListeningEvent(event_id=f"e{ts}{user}", user_id=user, ts=ts, type="play", item_id="i1",
                                   ms_played=1000)
            records.append(SourceRecord(EVENTS, 0, offsets[EVENTS], user.encode(), encode(event)))
            offsets[EVENTS] += 1
        return store.apply_batch(records).metric_records

    try:
        store.register_spec(SPEC)
        store.register_spec(other)
        batch(T0, ["exp", "other"])
        published = batch(T0 + 6 * S, ["exp"])  # moved past the republish step, no window closed
        republished = [r for r in published if r["experiment"] == "other"]
        assert republished and {r["watermark_ts"] for r in republished} == {T0 + 6 * S}
        assert {r["exposed"] for r in republished if r["variant"] == "a"} == {3}
        assert republished == store.partial_records("other")
    finally:
        store.close()
