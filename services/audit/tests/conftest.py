"""Journals on SQLite (a file per test) and PostgreSQL (a schema per test), and audit events to fill them.

PostgreSQL: ``VIGIE_TEST_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``).
Where it is unreachable the PostgreSQL tests skip, saying why; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigie_audit.store import JournalStore
from vigie_core.audit import AuditAction, AuditEvent, new_audit_event
from vigie_embedded.testing import postgres_schema

ACTIONS = [
    AuditAction.AUDIT_ACTION_CONFIG_UPDATE,
    AuditAction.AUDIT_ACTION_DATA_READ,
    AuditAction.AUDIT_ACTION_DATA_EXPORT,
    AuditAction.AUDIT_ACTION_OBJECTION_HONOURED,
]
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

EventFactory = Callable[..., list[AuditEvent]]


def events(n: int, *, service: str = "registry", start: int = 0) -> list[AuditEvent]:
    """``n`` varied, valid events; event ``i`` says its number in details["seq"]."""
    return [
        new_audit_event(
            service,
            ACTIONS[i % len(ACTIONS)],
            actor=f"op-{i % 7}",
            motive=f"test motive {i}",
            camera_ids=[f"cam-{i % 5}", f"cam-{(i + 2) % 5}"] if i % 3 else [],
            records=[("zone", f"zone-{i % 4}")],
            data_start=T0 - timedelta(hours=1),
            data_end=T0,
            details={"seq": str(i)},
            occurred_at=T0 + timedelta(seconds=i),
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
def make_events() -> EventFactory:
    return events


@dataclass(frozen=True, slots=True)
class JournalDatabase:
    url: str
    schema: str | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    async def open(self) -> JournalStore:
        return await JournalStore.open(self.url, schema_name=self.schema)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> JournalDatabase:
    return JournalDatabase(f"sqlite+aiosqlite:///{tmp_path / 'journal.sqlite3'}")


@pytest.fixture
async def postgres_database() -> AsyncIterator[JournalDatabase]:
    """A fresh schema in the test database, dropped afterwards."""
    async with postgres_schema("vigie_audit_test") as found:
        yield JournalDatabase(found.url, found.schema)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest) -> JournalDatabase:
    """The same test on both backends."""
    name = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    found: JournalDatabase = request.getfixturevalue(name)
    return found


@pytest.fixture
async def store(database: JournalDatabase) -> AsyncIterator[JournalStore]:
    journal = await database.open()
    try:
        yield journal
    finally:
        await journal.close()
