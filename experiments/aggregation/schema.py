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
-- event ids seen within the lookback (dedupe); no raw event is kept
CREATE TABLE IF NOT EXISTS agg_events (
    part         INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    PRIMARY KEY (part, event_id)
);
-- a user's history: one row per event-time bucket, its summary per event type as JSON
-- ({"play": [n, ms_played, [items], [genres]], ...})
CREATE TABLE IF NOT EXISTS agg_buckets (
    part         INTEGER NOT NULL,
    user_id      TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    summary      TEXT NOT NULL,
    PRIMARY KEY (part, user_id, bucket_start)
);
-- exposure ids seen within the horizon (dedupe)
CREATE TABLE IF NOT EXISTS agg_exposures (
    part         INTEGER NOT NULL,
    exposure_id  TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    PRIMARY KEY (part, exposure_id)
);
CREATE TABLE IF NOT EXISTS agg_first_exposures (
    part         INTEGER NOT NULL,
    experiment   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    variant      TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    exposure_id  TEXT NOT NULL,
    multi_variant INTEGER NOT NULL,
    PRIMARY KEY (part, experiment, user_id)
);
-- one row per closed (experiment, user, metric) window
CREATE TABLE IF NOT EXISTS agg_contributions (
    part         INTEGER NOT NULL,
    experiment   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    metric       TEXT NOT NULL,
    variant      TEXT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    den          DOUBLE PRECISION,
    pre          DOUBLE PRECISION,
    PRIMARY KEY (part, experiment, user_id, metric)
);
CREATE TABLE IF NOT EXISTS agg_late_records (
    part         INTEGER NOT NULL,
    experiment   TEXT NOT NULL,
    n            BIGINT NOT NULL,
    PRIMARY KEY (part, experiment)
);
CREATE TABLE IF NOT EXISTS agg_partition_watermarks (
    part         INTEGER NOT NULL,
    topic        TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    max_ts       BIGINT,
    PRIMARY KEY (topic, partition_id)
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
INSERT_EVENT = "INSERT INTO agg_events (part, event_id, user_id, ts) VALUES (?, ?, ?, ?)"
DELETE_EVENT = "DELETE FROM agg_events WHERE part = ? AND event_id = ?"
DELETE_BUCKET = "DELETE FROM agg_buckets WHERE part = ? AND user_id = ? AND bucket_start = ?"
UPSERT_BUCKET = (
    "INSERT INTO agg_buckets (part, user_id, bucket_start, summary) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (part, user_id, bucket_start) DO UPDATE SET summary = excluded.summary"
)
INSERT_EXPOSURE = "INSERT INTO agg_exposures (part, exposure_id, ts) VALUES (?, ?, ?)"
DELETE_EXPOSURE = "DELETE FROM agg_exposures WHERE part = ? AND exposure_id = ?"
UPSERT_ANCHOR = (
    "INSERT INTO agg_first_exposures (part, experiment, user_id, variant, ts, exposure_id, multi_variant) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (part, experiment, user_id) DO UPDATE SET "
    "variant = excluded.variant, ts = excluded.ts, exposure_id = excluded.exposure_id, "
    "multi_variant = excluded.multi_variant"
)
INSERT_CONTRIBUTION = "INSERT INTO agg_contributions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_LATE = (
    "INSERT INTO agg_late_records (part, experiment, n) VALUES (?, ?, ?) "
    "ON CONFLICT (part, experiment) DO UPDATE SET n = excluded.n"
)
UPSERT_PARTITION = (
    "INSERT INTO agg_partition_watermarks (part, topic, partition_id, max_ts) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET max_ts = excluded.max_ts"
)
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
# summed in Python (``SufficientStats``): SQL's SUM would round in the order of the rows
LOAD_CONTRIBUTIONS = "SELECT experiment, variant, metric, value, den, pre FROM agg_contributions WHERE part = ?"
#: The experiments topic is read by every process: its stored offset only moves forward.
UPSERT_SHARED_OFFSET = (
    "INSERT INTO agg_offsets (part, topic, partition_id, next_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET "
    "next_offset = {greatest}(agg_offsets.next_offset, excluded.next_offset)"
)
