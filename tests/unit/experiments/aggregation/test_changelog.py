"""A partition's changelog rebuilds exactly the state that wrote it: from its deltas, from a
snapshot, from a snapshot followed by deltas; and the store that compacts often loads what one
pass built."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from experiments.aggregation import changelog
from experiments.aggregation.state import AggregationState
from experiments.spec import parse_spec
from streams.events import Exposure, ListeningEvent

T0 = 1_767_225_600_000
S = 1000
D = 86_400_000
SPEC = parse_spec({
    "id": "exp", "salt": "s", "start": T0, "end": T0 + 10_000 * S, "control": "a",
    "variants": [{"name": "a", "weight": 0.5, "policy": "p"}, {"name": "b", "weight": 0.5, "policy": "q"}],
    "metrics": [
        {"name": "ms", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "ms_played", "window": {"length": "10s"}, "covariate": {"length": "5s"}},
        {"name": "items", "role": "success", "kind": "mean", "direction": "increase",
         "measure": "distinct_items", "window": {"delay": "2s", "length": "6s"}},
        {"name": "skip_rate", "role": "guardrail", "kind": "ratio", "direction": "decrease",
         "numerator": "skips", "denominator": {"agg": "count", "types": ["play", "skip"]},
         "window": {"length": "10s"}, "margin": 0.05},
    ],
})
PARTS = [("tandem.events", 0), ("tandem.exposures", 0)]


def records(seed: int, size: int = 600) -> list[tuple[tuple[str, int], object]]:
    rng = random.Random(seed)
    log: list[tuple[tuple[str, int], object]] = []
    for i in range(size):
        ts = T0 + max(0, i * 300 + rng.randrange(-8_000, 1_000))
        user = f"u{rng.randrange(8)}"
        if rng.random() < 0.05 and log:
            log.append(rng.choice(log))  # a producer retry
        elif rng.random() < 0.15:
            log.append((PARTS[1], Exposure(exposure_id=f"x{i}", experiment="exp", variant=rng.choice("ab"),
                                           user_id=user, ts=ts)))
        else:
            etype = rng.choice(["play", "play", "skip", "like"])
            log.append((PARTS[0], ListeningEvent(event_id=f"e{i}", user_id=user, ts=ts, type=etype,
                                                 item_id=f"i{rng.randrange(4)}", genre=rng.choice(["g0", "g1"]),
                                                 ms_played=rng.randrange(60_000) if etype == "play" else 0)))
    return log


def fresh(resolution_ms: int) -> AggregationState:
    state = AggregationState(allowed_lateness_ms=1500, resolution_ms=resolution_ms)
    state.register_spec(SPEC)
    for partition in PARTS:
        state.declare_partition(partition)
    return state


def apply(state: AggregationState, log: list) -> None:
    for partition, record in log:
        if isinstance(record, ListeningEvent):
            state.apply_event(record, partition)
        else:
            state.apply_exposure(record, partition)


def loaded(payloads: list[str], resolution_ms: int, watermark: int | None) -> AggregationState:
    restored = changelog.replay(payloads)
    state = AggregationState(allowed_lateness_ms=1500, resolution_ms=resolution_ms)
    state.load(
        specs=[SPEC], events=[(i, u, ts) for i, (u, ts) in restored.events.items()],
        buckets=list(changelog.bucket_rows(restored)),
        anchors=[(e, u, a) for (e, u), a in restored.anchors.items()], stats=restored.stats,
        late=restored.late, partitions=restored.partitions, watermark=watermark,
    )
    return state


def contents(state: AggregationState) -> tuple:
    return (
        dict(state.events),
        {u: {s: {t: x.to_row() for t, x in b.items()} for s, b in bs.items()} for u, bs in state.buckets.items()},
        {e: dict(users) for e, users in state.anchors.items()},
        {key: (s.n, s.terms()) for key, s in state.stats.items()},
        dict(state.late), dict(state.tracker.partitions), state.metric_records("exp", partition=0),
    )


@pytest.mark.parametrize("resolution_ms", [1, 2 * S, D])
@pytest.mark.parametrize("seed", range(6))
def test_deltas_and_snapshots_rebuild_the_state_that_wrote_them(seed, resolution_ms):
    log = records(seed)
    state = fresh(resolution_ms)
    state.take_journal()
    rng = random.Random(seed)
    payloads: list[str] = []
    position = 0
    while position < len(log):
        size = rng.randrange(1, 80)
        apply(state, log[position:position + size])
        position += size
        if rng.random() < 0.15:  # a compaction: the whole state replaces the log
            state.take_journal()
            documents, _ = changelog.snapshot(state)
            payloads = [changelog.dumps(doc) for doc in documents]
        else:
            document, _ = changelog.delta(state, state.take_journal())
            payloads.append(changelog.dumps(document))
    assert state.tracker.watermark is not None and state.stats  # windows closed
    assert len(state.events) < len({r.event_id for _, r in log if isinstance(r, ListeningEvent)}) / 2  # ids pruned
    assert contents(loaded(payloads, resolution_ms, state.tracker.watermark)) == contents(state)
    documents, _ = changelog.snapshot(state)
    snapshot = [changelog.dumps(doc) for doc in documents]
    assert contents(loaded(snapshot, resolution_ms, state.tracker.watermark)) == contents(state)


def test_a_store_that_compacts_at_every_commit_loads_what_one_pass_built(tmp_path: Path, monkeypatch):
    from tests.unit.experiments.aggregation.test_store import EVENTS, EXPOSURES, make_log, open_store, snapshot

    log = make_log(11)

    def run(path: Path, batch: int) -> tuple:
        store = open_store(path)
        store.declare_partitions([(EVENTS, 0), (EVENTS, 1), (EXPOSURES, 0)])
        for i in range(0, len(log), batch):
            store.apply_batch(log[i:i + batch])
        store.close()
        reopened = open_store(path)  # the state as a process claiming the partitions loads it
        try:
            return snapshot(reopened, path)
        finally:
            reopened.close()

    expected = run(tmp_path / "one.db", len(log))
    monkeypatch.setattr(changelog, "COMPACT_MIN", 0)  # a snapshot whenever the log outgrows the last one
    assert run(tmp_path / "compacted.db", 7) == expected


def test_a_log_written_when_exposure_ids_were_kept_still_loads():
    """Older changelogs carry exposure ids (``x``, ``px``); they are read and ignored."""
    state = fresh(D)
    state.take_journal()
    apply(state, records(3))
    document, _ = changelog.delta(state, state.take_journal())
    assert "x" not in document and "px" not in document
    older = [changelog.dumps({"x": [["x-old", 5], ["x-gone", 6]]}), changelog.dumps({"px": ["x-gone"]}),
             changelog.dumps(document)]
    watermark = state.tracker.watermark
    assert contents(loaded(older, D, watermark)) == contents(loaded(older[2:], D, watermark))


def test_a_day_bucket_is_written_as_its_distance_from_the_last_and_its_numbers_under_its_user():
    state = AggregationState(allowed_lateness_ms=1500, resolution_ms=D, item_sets=False, min_retention_ms=5 * D)
    state.register_spec(SPEC)
    state.declare_partition(PARTS[0])
    state.take_journal()
    for i, (ts, ms) in enumerate(((T0, 1_000), (T0 + S, 2_500), (T0 + 3 * D, 700))):
        state.apply_event(ListeningEvent(event_id=f"e{i}", user_id="u1", ts=ts, type="play",
                                         item_id="i1", genre="g0", ms_played=ms), PARTS[0])
    journal = state.take_journal()
    for order in (sorted(journal.buckets), sorted(journal.buckets, reverse=True)):  # a set's order varies by run
        document, entries = changelog.delta(state, dataclasses.replace(journal, buckets=order))
        assert document["Bg"] == [D, {"u1": {"play": [[T0 // D, 2, 3_500], [3, 1, 700]]}}]
        assert document["E"] == {"u1": [["e0", T0], ["e1", T0 + S], ["e2", T0 + 3 * D]]}
        assert document["p"] == [[*PARTS[0], T0 + 3 * D]]
        assert entries == 6  # two summaries, three ids, one partition's newest event time


def _absolute_starts(document: dict) -> dict:
    """A document as logs wrote it before the gaps: ``B``, each start a multiple of the step."""
    if "Bg" not in document:
        return document
    step, users = document["Bg"]
    absolute: dict = {}
    for user, by_type in users.items():
        for etype, rows in by_type.items():
            at, out = 0, []
            for row in rows:
                at += row if not etype else row[0]
                out.append(at if not etype else [at, *row[1:]])
            absolute.setdefault(user, {})[etype] = out
    return {**{k: v for k, v in document.items() if k != "Bg"}, "B": [step, absolute]}


def test_a_log_written_with_absolute_bucket_starts_still_loads():
    for resolution_ms in (1, D):
        state = fresh(resolution_ms)
        apply(state, records(4))
        documents, _ = changelog.snapshot(state)
        assert any("Bg" in doc for doc in documents)
        watermark = state.tracker.watermark
        older = [changelog.dumps(_absolute_starts(doc)) for doc in documents]
        assert "Bg" not in "".join(older)
        assert contents(loaded(older, resolution_ms, watermark)) == contents(state)


def test_a_log_written_a_row_per_entry_still_loads():
    """Logs from before the entries were grouped by user (``e``, ``b``, ``a``) load the same state."""
    for resolution_ms in (1, D):
        state = fresh(resolution_ms)
        apply(state, records(4))
        documents, _ = changelog.snapshot(state)
        older = {
            "e": [[i, seen.user_id, seen.ts] for i, seen in state.events.items()],
            "b": [[u, start, etype, *summary.to_row()]
                  for u, buckets in state.buckets.items() for start, bucket in buckets.items()
                  for etype, summary in bucket.items()],
            "a": [[e, u, a.variant, a.ts, a.exposure_id, int(a.multi)]
                  for e, users in state.anchors.items() for u, a in users.items()],
            "s": [[e, v, m, s.n, s.terms()] for (e, v, m), s in state.stats.items()],
            "p": [[t, p, ts] for (t, p), ts in state.tracker.partitions.items()],
            "l": dict(state.late),
        }
        assert state.buckets and state.anchors and state.events
        watermark = state.tracker.watermark
        new = [changelog.dumps(doc) for doc in documents]
        assert contents(loaded([changelog.dumps(older)], resolution_ms, watermark)) == contents(
            loaded(new, resolution_ms, watermark)) == contents(state)
