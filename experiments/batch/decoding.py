"""Decoding a polled batch of one partition into an archive table, with the stream's validation.

The wire schemas (``streams.events``) decide what is valid; the archive must hold exactly
the records the stream accepts, or stream and batch would differ. Decoding them one at a
time with pydantic costs more than consuming them, so a batch of events or exposures first
takes a vectorized path: Arrow's JSON reader with the schema's columns (it refuses unknown
fields, fields given twice and every JSON type mismatch: ``5.0`` or ``"5"`` for an integer,
``7`` for a string), then the schema's constraints checked column by column. Anything that
path is unsure of (any refusal, any constraint not met, a null that may be explicit, a
newline, NaN) sends the whole batch to the per-record path, which finds each bad record
and its reason. Decisions always take the per-record path (nested fields).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from experiments.batch.archive import SCHEMAS, rows_of, to_table
from streams.errors import InvalidRecord
from streams.events import (
    ITEM_EVENT_TYPES,
    MAX_MS_PLAYED,
    MAX_RECORD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    Decision,
    EventType,
    Exposure,
    ListeningEvent,
    decode,
)

_MODELS: dict[str, type[ListeningEvent] | type[Exposure] | type[Decision]] = {
    "events": ListeningEvent, "exposures": Exposure, "decisions": Decision,
}
_PROVENANCE = ("kafka_partition", "kafka_offset")
#: Fields that must be present and non-null, and fields that may be null (absent), per topic.
_REQUIRED = {
    "events": ("event_id", "user_id", "ts", "type"),
    "exposures": ("exposure_id", "experiment", "variant", "user_id", "ts"),
}
_STRINGS = {
    "events": ("event_id", "user_id", "item_id", "genre"),
    "exposures": ("exposure_id", "experiment", "variant", "user_id", "surface"),
}
#: Fields with a default: a null there may be an explicit null, which the schema refuses.
_DEFAULTED = {"events": ("v", "ms_played"), "exposures": ("v", "params")}


@dataclass(frozen=True)
class Rejected:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: InvalidRecord


#: Fields of the wire schema the archive does not keep: parsed and checked, then dropped.
_WIRE_ONLY = {
    "events": (),
    "exposures": (pa.field("surface", pa.string()), pa.field("params", pa.list_(pa.string()))),
}
#: List fields of Names, with their largest length.
_NAME_LISTS = {"events": {}, "exposures": {"params": 100}}


def _wire_schema(topic: str) -> pa.Schema:
    fields = [pa.field("v", pa.int64())] + [
        pa.field(f.name, f.type) for f in SCHEMAS[topic] if f.name not in _PROVENANCE
    ]
    return pa.schema(fields + list(_WIRE_ONLY[topic]))


_WIRE = {topic: _wire_schema(topic) for topic in _REQUIRED}


def decode_partition_batch(
    topic: str, partition: int, records: list[tuple[int, bytes | None, bytes | None]]
) -> tuple[pa.Table, list[Rejected]]:
    """(offset, key, value) of one partition → the archive table of the valid records and the
    rejected ones with their reasons."""
    if topic in _WIRE and records:
        table = _fast(topic, partition, records)
        if table is not None:
            return table, []
    return _one_by_one(topic, partition, records)


def _one_by_one(
    topic: str, partition: int, records: list[tuple[int, bytes | None, bytes | None]]
) -> tuple[pa.Table, list[Rejected]]:
    valid: list[tuple[int, int, Any]] = []
    rejected = []
    for offset, key, value in records:
        try:
            if value is None:
                raise InvalidRecord(f"{_MODELS[topic].__name__}: no value (a tombstone)")
            valid.append((partition, offset, decode(value, _MODELS[topic])))
        except InvalidRecord as exc:
            rejected.append(Rejected(partition, offset, key, value, exc))
    return to_table(topic, list(rows_of(valid, topic))), rejected


def _fast(topic: str, partition: int, records: list[tuple[int, bytes | None, bytes | None]]) -> pa.Table | None:
    values = [value for _, _, value in records]
    if None in values or max(map(len, values)) > MAX_RECORD_BYTES:  # type: ignore[arg-type]
        return None
    body = b"\n".join(values)  # type: ignore[arg-type]
    # One newline per record boundary and none inside a value; no NaN or Infinity anywhere.
    if body.count(b"\n") != len(values) - 1 or b"\r" in body or b"NaN" in body or b"Infinity" in body:
        return None
    options = pajson.ParseOptions(explicit_schema=_WIRE[topic], unexpected_field_behavior="error")
    try:
        table = pajson.read_json(io.BytesIO(body), parse_options=options,
                                 read_options=pajson.ReadOptions(use_threads=False, block_size=len(body) + 1))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != len(values) or not _constraints_hold(topic, table, values):
        return None
    if topic == "events":
        table = table.set_column(table.schema.get_field_index("ms_played"), "ms_played",
                                 pc.fill_null(table.column("ms_played"), 0))
    table = table.drop_columns(["v"])
    table = table.append_column("kafka_partition", pa.array([partition] * len(values), pa.int32()))
    table = table.append_column("kafka_offset", pa.array([offset for offset, _, _ in records], pa.int64()))
    return table.select(SCHEMAS[topic].names).cast(SCHEMAS[topic])


def _constraints_hold(topic: str, table: pa.Table, values: list[bytes | None]) -> bool:
    """The schema's rules, column by column; False when any record may break one."""
    for name in _REQUIRED[topic]:
        if table.column(name).null_count:
            return False
    for name in _DEFAULTED[topic]:
        column = table.column(name)
        if column.null_count and any(
            f'"{name}"'.encode() in value for value, null in zip(values, column.is_null().to_pylist(), strict=True)
            if null and value is not None
        ):
            return False  # maybe an explicit null, which the schema refuses: let it say so
    checks = [pc.fill_null(pc.equal(table.column("v"), 1), True)]
    ts = table.column("ts")
    checks += [pc.greater_equal(ts, MIN_TS_MS), pc.less(ts, MAX_TS_MS)]
    for name in _STRINGS[topic]:
        checks.append(pc.fill_null(_name_length_holds(table.column(name)), True))
    for name, longest in _NAME_LISTS[topic].items():
        names = table.column(name)
        checks.append(pc.fill_null(pc.less_equal(pc.list_value_length(names), longest), True))
        flat = pc.list_flatten(names)
        if flat.null_count:
            return False
        checks.append(_name_length_holds(flat))
    if topic == "events":
        kind = table.column("type")
        checks.append(pc.is_in(kind, value_set=pa.array([t.value for t in EventType])))
        needs_item = pc.is_in(kind, value_set=pa.array([t.value for t in ITEM_EVENT_TYPES]))
        checks.append(pc.or_(pc.invert(needs_item), pc.is_valid(table.column("item_id"))))
        played = table.column("ms_played")
        checks.append(pc.fill_null(pc.and_(pc.greater_equal(played, 0), pc.less_equal(played, MAX_MS_PLAYED)), True))
    return all(pc.all(check, min_count=0).as_py() for check in checks)  # min_count=0: all of nothing holds


def _name_length_holds(strings: Any) -> Any:
    """A Name's rule (1 to 128 characters), per string; null where the string is null."""
    length = pc.utf8_length(strings)
    return pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, 128))
