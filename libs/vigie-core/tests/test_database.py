"""The SQLite engine: WAL from the first connection on, and readers that connect while a writer holds the
write lock wait for it instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from vigie_core.database import WRITE_OPTION, make_engine


async def test_a_new_file_is_in_wal_and_connecting_during_a_write_waits(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data.sqlite3'}"
    writer = make_engine(url)
    async with writer.connect() as connection:
        mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
    assert mode == "wal"
    async with writer.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))

    async def reader(i: int) -> int:
        engine = make_engine(url)  # a new engine, a new connection: as the tests' pollers do
        try:
            async with engine.connect() as connection:
                return int((await connection.execute(text("SELECT count(*) FROM t"))).scalar_one())
        finally:
            await engine.dispose()

    async with writer.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        await connection.execute(text("INSERT INTO t VALUES (1)"))
        # Connecting (and its pragmas) while the write lock is held: no "database is locked".
        counts = await asyncio.gather(*(reader(i) for i in range(8)))
    assert counts == [0] * 8
    await writer.dispose()


async def test_connections_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    """A service and a reader opening a new database at once (as the tests' pollers do): setting WAL does
    not wait for the busy timeout, and one of them used to fail with "database is locked"."""
    for attempt in range(10):
        url = f"sqlite+aiosqlite:///{tmp_path / f'new-{attempt}.sqlite3'}"
        engines = [make_engine(url) for _ in range(6)]

        async def mode(engine: AsyncEngine) -> str:
            async with engine.connect() as connection:
                return str((await connection.execute(text("PRAGMA journal_mode"))).scalar_one())

        try:
            assert await asyncio.gather(*(mode(e) for e in engines)) == ["wal"] * len(engines)
        finally:
            for engine in engines:
                await engine.dispose()
