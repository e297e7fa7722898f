"""The SQLite engine: WAL from the first connection on, and readers that connect while a writer holds the
write lock wait for it instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

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
