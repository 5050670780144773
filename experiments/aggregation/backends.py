"""The two databases the aggregation store runs on, behind the part of sqlite3's API it uses.

* SQLite (a file path or ``:memory:``): embedded, one process.
* PostgreSQL (a ``postgresql://`` DSN) through psycopg 3: several processes share one database;
  ``FOR UPDATE`` on the ownership rows orders a commit against a concurrent claim.

Both run in autocommit mode and the store writes ``BEGIN``/``COMMIT`` itself, so a transaction
is exactly what the store says it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Dialect:
    name: str
    begin: str  # starts a write transaction
    lock_rows: str  # appended to a SELECT of the rows a commit must hold
    greatest: str
    errors: tuple[type[BaseException], ...]


SQLITE = Dialect("sqlite", "BEGIN IMMEDIATE", "", "max", (sqlite3.Error,))


def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def connect(target: str | Path) -> tuple[Any, Dialect]:
    """A connection and its dialect: a DSN opens PostgreSQL, anything else is a SQLite path."""
    if is_postgres(target):
        return PostgresConnection(str(target)), postgres_dialect()
    conn = sqlite3.connect(str(target), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # atomic; a power cut may lose the tail
    conn.execute("PRAGMA busy_timeout=30000")
    return conn, SQLITE


def postgres_dialect() -> Dialect:
    import psycopg

    return Dialect("postgresql", "BEGIN", " FOR UPDATE", "GREATEST", (psycopg.Error,))


class PostgresConnection:
    """psycopg 3 with sqlite3's calling conventions (``?`` placeholders, ``execute``/``executemany``)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)

    @staticmethod
    def _sql(statement: str) -> str:
        return statement.replace("?", "%s")

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor = self._conn.cursor()
        cursor.execute(self._sql(statement), tuple(params) or None)  # type: ignore[arg-type]
        return cursor

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._conn.cursor() as cursor:
                cursor.executemany(self._sql(statement), rows)  # type: ignore[arg-type]

    def executescript(self, script: str) -> None:
        self._conn.execute(script)  # type: ignore[arg-type]

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()
