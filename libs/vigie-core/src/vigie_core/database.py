"""The SQL engine every service that stores data uses: SQLite (the embedded default) or PostgreSQL.

SQLite gets WAL, full sync (a commit acknowledged to NATS survives a power cut) and real transactions;
PostgreSQL gets an optional schema through the connection's search_path.
"""

from __future__ import annotations

import hashlib
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["WRITE_OPTION", "make_engine", "migrate"]

# Execution option marking a writer: on SQLite its transactions take the write lock at BEGIN.
WRITE_OPTION = "vigie_write"


def make_engine(url: str, *, schema_name: str | None = None) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``/``+psycopg``)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        _configure_sqlite(engine)
        return engine
    if backend != "postgresql":
        raise ValueError(f"database_url: {backend} is not supported (sqlite or postgresql)")
    connect_args: dict[str, Any] = {}
    if schema_name:
        if parsed.get_driver_name() == "asyncpg":
            connect_args["server_settings"] = {"search_path": schema_name}
        else:
            connect_args["options"] = f"-csearch_path={schema_name}"
    return create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's implicit transactions start late and never around DDL; SQLAlchemy's "begin" event
        # below starts them explicitly instead (the recipe of SQLAlchemy's SQLite documentation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First, so that even switching a new file to WAL waits for another connection's lock.
        cursor.execute("PRAGMA busy_timeout=10000")
        _set_wal(cursor)
        # FULL: a commit acknowledged to NATS survives a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        # 64 MiB of pages: unique indexes on random ids have no locality, keep them in memory.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        # A writer takes the write lock first (IMMEDIATE), so it waits for another writer (busy_timeout)
        # instead of failing when its read snapshot cannot be upgraded.
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _set_wal(cursor: Any, wait_s: float = 10.0) -> None:
    """Put the file in WAL mode, once. WAL is a property of the file, kept once set, so it is set only on a
    file not in WAL yet; setting it takes a lock that does not wait for the busy timeout, so two
    connections opening a new file together, or one asking while another writes, get "database is
    locked": retried until the mode is WAL (set by either)."""
    deadline = time.monotonic() + wait_s
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:  # the driver's OperationalError, whichever adapter wraps it
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# Alembic installs its ``op`` and ``context`` proxies as module globals for the length of a migration,
# so two migrations in one process (two stores, e.g. a test and a service) must not overlap.
_ALEMBIC_GLOBALS = threading.Lock()


def _upgrade(connection: Connection, package: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files(package) / "migrations"))
    config.attributes["connection"] = connection
    with _ALEMBIC_GLOBALS:
        command.upgrade(config, "head")


async def migrate(engine: AsyncEngine, package: str) -> None:
    """Bring ``package``'s tables to its latest Alembic migration (``<package>/migrations``), idempotently.

    Replicas starting together migrate one at a time: on PostgreSQL under an advisory lock keyed by the
    package, on SQLite under the write lock taken at BEGIN.
    """
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(package.encode()).digest()[:8], "big", signed=True)
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        await connection.run_sync(_upgrade, package)
