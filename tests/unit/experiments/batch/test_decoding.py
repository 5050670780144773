"""The vectorized decoding path accepts exactly what the wire schemas accept, or steps aside."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.batch.decoding import _fast, _one_by_one, decode_partition_batch
from streams.events import MAX_TS_MS, MIN_TS_MS

GOOD_EVENT = {"v": 1, "event_id": "e1", "user_id": "u1", "ts": 1_767_225_600_000, "type": "play",
              "item_id": "i1", "genre": "jazz", "ms_played": 1000}
GOOD_EXPOSURE = {"exposure_id": "x1", "experiment": "exp", "variant": "a", "user_id": "u1", "ts": 1_767_225_600_000,
                 "surface": "home", "params": ["ranker"]}  # as serving writes them

# Values that break a field in the ways producers do: wrong JSON types, bounds, nulls, absence.
BREAKS = st.sampled_from([
    ("ts", 5.0), ("ts", "5"), ("ts", MIN_TS_MS - 1), ("ts", MAX_TS_MS), ("ts", None), ("ts", True),
    ("ts", 2**70), ("event_id", ""), ("event_id", "e" * 129), ("event_id", 7), ("event_id", None),
    ("type", "pause"), ("type", None), ("item_id", None), ("item_id", ""), ("genre", None), ("genre", "g" * 129),
    ("ms_played", -1), ("ms_played", 86_400_001), ("ms_played", None), ("ms_played", 1.5), ("v", 2), ("v", None),
    ("extra", 1), ("exposure_id", ""), ("variant", None), ("experiment", "x" * 200), ("user_id", "ü" * 128),
    ("surface", None), ("surface", ""), ("surface", 5), ("surface", "s" * 129), ("params", None), ("params", "ranker"),
    ("params", []), ("params", [""]), ("params", [None]), ("params", [5]), ("params", ["p"] * 100),
    ("params", ["p"] * 101), ("params", ["x" * 129]),
])

DROPPABLE = st.sampled_from(["ts", "v", "ms_played", "item_id", "genre", "type", "surface", "params"])


def mutate(record: dict, breaks: list[tuple[str, object]], drops: list[str]) -> bytes:
    out = dict(record)
    for field, value in breaks:
        if field in record or field in ("extra", "v"):
            out[field] = value
    for field in drops:
        out.pop(field, None)
    return json.dumps(out).encode()


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(["events", "exposures"]),
    mutations=st.lists(st.tuples(st.lists(BREAKS, max_size=2), st.lists(DROPPABLE, max_size=2)),
                       min_size=1, max_size=6),
    session=st.booleans(),
)
def test_the_fast_path_agrees_with_the_wire_schema(topic: str, mutations: list, session: bool) -> None:
    base = dict(GOOD_EVENT, type="session_start", item_id=None) if session and topic == "events" else (
        GOOD_EVENT if topic == "events" else GOOD_EXPOSURE)
    id_field = "event_id" if topic == "events" else "exposure_id"
    records = [
        (offset, b"k", mutate({**base, id_field: f"r{offset}"}, breaks, drops))
        for offset, (breaks, drops) in enumerate(mutations)
    ]
    reference, rejected = _one_by_one(topic, 3, records)
    fast = _fast(topic, 3, records)
    if fast is not None:  # the fast path answers only when every record is valid
        assert not rejected
        assert fast.to_pylist() == reference.to_pylist()
    table, bad = decode_partition_batch(topic, 3, records)
    assert table.to_pylist() == reference.to_pylist()
    assert [(r.offset, str(r.error)) for r in bad] == [(r.offset, str(r.error)) for r in rejected]


def test_valid_batches_take_the_fast_path() -> None:
    records = [(i, b"k", json.dumps({**GOOD_EVENT, "event_id": f"e{i}"}).encode()) for i in range(100)]
    fast = _fast("events", 0, records)
    assert fast is not None and fast.num_rows == 100
    assert fast.column("kafka_offset").to_pylist() == list(range(100))


def test_valid_exposures_take_the_fast_path() -> None:
    records = [(i, b"k", json.dumps({**GOOD_EXPOSURE, "exposure_id": f"x{i}"}).encode()) for i in range(100)]
    fast = _fast("exposures", 0, records)
    assert fast is not None and fast.num_rows == 100
    assert fast.to_pylist() == _one_by_one("exposures", 0, records)[0].to_pylist()
