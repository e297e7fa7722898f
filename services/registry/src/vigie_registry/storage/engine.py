"""The database engine (shared: ``vigie_core.database``) and the migrations run at start-up."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from vigie_core.database import make_engine

__all__ = ["make_engine", "migrate"]

# pg_advisory_xact_lock key ("VIGIEREG"): replicas starting together migrate one at a time.
_MIGRATION_LOCK_KEY = 0x5649474945524547


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("vigie_registry") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the tables to the latest migration (idempotent)."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        await connection.run_sync(_upgrade)
