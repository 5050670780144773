"""The state store's schema, in plain SQL that fits SQLite and PostgreSQL alike.

Everything an input partition's records build is keyed by ``part`` (the partition number:
``events`` and ``exposures`` are keyed by user and co-partitioned, so partition p of both
holds the same users). ``agg_parts`` says which process owns a partition and with which
generation: every commit compares it in the same transaction (fencing). Specs and the
offsets of the ``experiments`` topic are shared by every partition (``part`` -1).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS agg_specs (
    experiment   TEXT PRIMARY KEY,
    spec_json    TEXT NOT NULL
);
-- who owns a partition; a commit whose generation is not this one is refused
CREATE TABLE IF NOT EXISTS agg_parts (
    part         INTEGER PRIMARY KEY,
    owner        TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    watermark    BIGINT
);
-- a partition's state as a changelog (experiments/aggregation/changelog.py): a snapshot's rows,
-- then one delta per commit, each a JSON document, applied in seq order when the partition is claimed
CREATE TABLE IF NOT EXISTS agg_state_log (
    part         INTEGER NOT NULL,
    seq          BIGINT NOT NULL,
    payload      TEXT NOT NULL,
    PRIMARY KEY (part, seq)
);
-- what a commit produced for the broker (dead letters, changed metric records), kept until acknowledged
CREATE TABLE IF NOT EXISTS agg_outbox (
    part         INTEGER NOT NULL,
    outbox_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    payload      TEXT NOT NULL
);
-- the next offset to consume, written in the same transaction as the state
CREATE TABLE IF NOT EXISTS agg_offsets (
    part         INTEGER NOT NULL,
    topic        TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id)
);
-- the broker log the state was built from (infra.kafka.incarnation): one row, name 'incarnation'
CREATE TABLE IF NOT EXISTS agg_meta (
    name         TEXT PRIMARY KEY,
    value        TEXT NOT NULL
);
"""

#: The shared ``part`` of specs and of the experiments topic's offsets.
SHARED = -1

UPSERT_SPEC = (
    "INSERT INTO agg_specs (experiment, spec_json) VALUES (?, ?) "
    "ON CONFLICT (experiment) DO UPDATE SET spec_json = excluded.spec_json"
)
CLAIM_PART = (
    "INSERT INTO agg_parts (part, owner, generation) VALUES (?, ?, 1) "
    "ON CONFLICT (part) DO UPDATE SET owner = excluded.owner, generation = agg_parts.generation + 1 "
    "RETURNING generation"
)
INSERT_STATE = "INSERT INTO agg_state_log (part, seq, payload) VALUES (?, ?, ?)"
DELETE_STATE = "DELETE FROM agg_state_log WHERE part = ?"
LOAD_STATE = "SELECT seq, payload FROM agg_state_log WHERE part = ? ORDER BY seq"
#: Tables of the former row-per-entry layout: a database that has them needs a fresh start.
FORMER_TABLES = ("agg_events", "agg_buckets", "agg_first_exposures", "agg_contributions")
SET_WATERMARK = "UPDATE agg_parts SET watermark = ? WHERE part = ?"
UPSERT_OFFSET = (
    "INSERT INTO agg_offsets (part, topic, partition_id, next_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset"
)
UPSERT_OUTBOX = (
    "INSERT INTO agg_outbox (part, outbox_id, kind, record_key, payload) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (outbox_id) DO UPDATE SET payload = excluded.payload"
)
DELETE_OUTBOX = "DELETE FROM agg_outbox WHERE outbox_id = ?"
#: The experiments topic is read by every process: its stored offset only moves forward.
UPSERT_SHARED_OFFSET = (
    "INSERT INTO agg_offsets (part, topic, partition_id, next_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET "
    "next_offset = {greatest}(agg_offsets.next_offset, excluded.next_offset)"
)
