"""The state store's schema, in plain SQL that also fits PostgreSQL (no SQLite-only types)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS agg_specs (
    experiment   TEXT PRIMARY KEY,
    spec_json    TEXT NOT NULL
);
-- event ids seen within the lookback (dedupe); no raw event is kept
CREATE TABLE IF NOT EXISTS agg_events (
    event_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    ts           BIGINT NOT NULL
);
-- a user's history: one row per event-time bucket, its summary per event type as JSON
-- ({"play": [n, ms_played, [items], [genres]], ...})
CREATE TABLE IF NOT EXISTS agg_buckets (
    user_id      TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    summary      TEXT NOT NULL,
    PRIMARY KEY (user_id, bucket_start)
);
-- exposure ids seen within the horizon (dedupe)
CREATE TABLE IF NOT EXISTS agg_exposures (
    exposure_id  TEXT PRIMARY KEY,
    ts           BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS agg_first_exposures (
    experiment   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    variant      TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    exposure_id  TEXT NOT NULL,
    multi_variant INTEGER NOT NULL,
    PRIMARY KEY (experiment, user_id)
);
-- one row per closed (experiment, user, metric) window
CREATE TABLE IF NOT EXISTS agg_contributions (
    experiment   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    metric       TEXT NOT NULL,
    variant      TEXT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    den          DOUBLE PRECISION,
    pre          DOUBLE PRECISION,
    PRIMARY KEY (experiment, user_id, metric)
);
CREATE TABLE IF NOT EXISTS agg_late_records (
    experiment   TEXT PRIMARY KEY,
    n            BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS agg_partition_watermarks (
    topic        TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    max_ts       BIGINT,
    PRIMARY KEY (topic, partition_id)
);
CREATE TABLE IF NOT EXISTS agg_meta (
    name         TEXT PRIMARY KEY,
    value        BIGINT
);
-- what a commit produced for the broker (dead letters, changed metric records), kept until acknowledged
CREATE TABLE IF NOT EXISTS agg_outbox (
    outbox_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    payload      TEXT NOT NULL
);
-- the next offset to consume, written in the same transaction as the state
CREATE TABLE IF NOT EXISTS agg_offsets (
    topic        TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id)
);
"""

UPSERT_SPEC = (
    "INSERT INTO agg_specs (experiment, spec_json) VALUES (?, ?) "
    "ON CONFLICT (experiment) DO UPDATE SET spec_json = excluded.spec_json"
)
INSERT_EVENT = "INSERT INTO agg_events (event_id, user_id, ts) VALUES (?, ?, ?)"
DELETE_BUCKET = "DELETE FROM agg_buckets WHERE user_id = ? AND bucket_start = ?"
INSERT_BUCKET = "INSERT INTO agg_buckets (user_id, bucket_start, summary) VALUES (?, ?, ?)"
DELETE_EVENT = "DELETE FROM agg_events WHERE event_id = ?"
INSERT_EXPOSURE = "INSERT INTO agg_exposures (exposure_id, ts) VALUES (?, ?)"
DELETE_EXPOSURE = "DELETE FROM agg_exposures WHERE exposure_id = ?"
UPSERT_ANCHOR = (
    "INSERT INTO agg_first_exposures (experiment, user_id, variant, ts, exposure_id, multi_variant) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (experiment, user_id) DO UPDATE SET "
    "variant = excluded.variant, ts = excluded.ts, exposure_id = excluded.exposure_id, "
    "multi_variant = excluded.multi_variant"
)
INSERT_CONTRIBUTION = "INSERT INTO agg_contributions VALUES (?, ?, ?, ?, ?, ?, ?)"
UPSERT_LATE = (
    "INSERT INTO agg_late_records (experiment, n) VALUES (?, ?) "
    "ON CONFLICT (experiment) DO UPDATE SET n = excluded.n"
)
UPSERT_PARTITION = (
    "INSERT INTO agg_partition_watermarks (topic, partition_id, max_ts) VALUES (?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET max_ts = excluded.max_ts"
)
UPSERT_META = (
    "INSERT INTO agg_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
UPSERT_OFFSET = (
    "INSERT INTO agg_offsets (topic, partition_id, next_offset) VALUES (?, ?, ?) "
    "ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset"
)
UPSERT_OUTBOX = (
    "INSERT INTO agg_outbox (outbox_id, kind, record_key, payload) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (outbox_id) DO UPDATE SET payload = excluded.payload"
)
DELETE_OUTBOX = "DELETE FROM agg_outbox WHERE outbox_id = ?"
# summed in Python (``SufficientStats``): SQL's SUM would round in the order of the rows
LOAD_CONTRIBUTIONS = "SELECT experiment, variant, metric, value, den, pre FROM agg_contributions"
