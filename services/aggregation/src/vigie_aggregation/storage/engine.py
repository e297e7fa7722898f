"""The database engine: SQLite (the embedded default) or PostgreSQL, and the migrations run at start-up.

The SQLite set-up is the one vigie_audit's store uses (WAL, full sync, explicit BEGIN); it belongs in a
shared library once one exists for databases (see the report of issue 3).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["make_engine", "migrate"]

# pg_advisory_xact_lock key ("VIGIEAGG"): replicas starting together migrate one at a time.
_MIGRATION_LOCK_KEY = 0x5649474945414747


def make_engine(url: str, *, schema_name: str | None = None) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, full sync and real transactions."""
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
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a report acknowledged to NATS after its commit survives a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("vigie_aggregation") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the tables to the latest migration (idempotent)."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        await connection.run_sync(_upgrade)
