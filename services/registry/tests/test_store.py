"""The store on SQLite and on PostgreSQL: versions from one sequence, sealed sources, objections that
extend and never stack, tombstones, and concurrent writers."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from vigie_registry.camera import StoredCamera
from vigie_registry.declaration import CameraDeclaration, SourceDeclaration
from vigie_registry.storage import schema
from vigie_registry.storage.store import (
    CameraExistsError,
    CameraNotFoundError,
    RegistryStore,
    SourceCipher,
    UnreadableSourceError,
)

from .conftest import NOW, declaration, security_declaration

T = int(NOW.timestamp())
URL = "rtsp://viewer:s3cret-pass@10.0.0.12:554/stream"


def parsed(body: dict[str, Any]) -> CameraDeclaration:
    return CameraDeclaration.model_validate({k: v for k, v in body.items() if k != "source"})


SOURCE = SourceDeclaration.model_validate({"url": URL})


async def test_cameras_are_created_changed_and_deleted_with_increasing_versions(
    any_store: RegistryStore,
) -> None:
    a = await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)
    b = await any_store.create("cam-b", parsed(declaration()), "draft", SOURCE, now=T)
    assert (a.version, b.version) == (1, 2)
    with pytest.raises(CameraExistsError):
        await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)
    old, new = await any_store.change("cam-a", lambda c: replace(c, status="active"), now=T + 5)
    assert (old.status, new.status, new.version, new.updated_at) == ("draft", "active", 3, T + 5)
    assert await any_store.camera("cam-a") == new
    assert [c.id for c in await any_store.cameras()] == ["cam-a", "cam-b"]
    unchanged, same = await any_store.change("cam-a", lambda c: c, now=T + 6)
    assert unchanged is same
    assert (await any_store.camera("cam-a")) == new

    await any_store.delete("cam-a")
    assert await any_store.tombstones() == [("cam-a", 4)]
    with pytest.raises(CameraNotFoundError):
        await any_store.change("cam-a", lambda c: c, now=T)
    # Declared again: its version continues the sequence, and the tombstone goes.
    again = await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)
    assert again.version == 5
    assert await any_store.tombstones() == []


async def test_a_refused_change_writes_nothing(any_store: RegistryStore) -> None:
    await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)

    def refuse(_: StoredCamera) -> StoredCamera:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await any_store.change("cam-a", refuse, now=T)

    async def audit_down(_old: StoredCamera | None, _new: StoredCamera | None) -> None:
        raise RuntimeError("audit unavailable")

    with pytest.raises(RuntimeError):
        await any_store.change(
            "cam-a", lambda c: replace(c, status="active"), now=T, before_commit=audit_down
        )
    camera = await any_store.camera("cam-a")
    assert camera is not None
    assert (camera.status, camera.version) == ("draft", 1)


async def test_the_source_is_sealed_at_rest_and_returned_only_on_request(any_store: RegistryStore) -> None:
    camera = await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)
    assert camera.source_display == "rtsp://viewer:***@10.0.0.12:554/stream"
    async with any_store.engine.connect() as conn:
        stored = (await conn.execute(select(schema.cameras.c.source_secret))).scalar_one()
        declaration_json = (await conn.execute(select(schema.cameras.c.declaration))).scalar_one()
    assert stored.startswith("fernet:")
    assert "s3cret" not in stored
    assert "s3cret" not in declaration_json
    assert await any_store.source_url("cam-a") == URL
    with pytest.raises(UnreadableSourceError):
        SourceCipher().open(stored)
    assert SourceCipher().open(SourceCipher().seal(URL)) == URL


async def test_objections_extend_a_pause_never_stack_and_never_pass_the_maximum(
    any_store: RegistryStore,
) -> None:
    await any_store.create("cam-a", parsed(declaration()), "active", SOURCE, now=T)

    def ok(_: StoredCamera) -> None:
        return None

    first = await any_store.object(
        "cam-a", receipt_id="a" * 32, now=T, pause_s=900, max_pause_s=3600, check=ok
    )
    assert (first.paused_until, first.extended) == (T + 900, False)
    second = await any_store.object(
        "cam-a", receipt_id="b" * 32, now=T + 300, pause_s=900, max_pause_s=3600, check=ok
    )
    assert (second.paused_until, second.extended) == (T + 1200, True)
    assert second.camera.version > first.camera.version
    # A short objection during a longer pause does not shorten it, and changes no version.
    third = await any_store.object(
        "cam-a", receipt_id="c" * 32, now=T + 301, pause_s=60, max_pause_s=3600, check=ok
    )
    assert third.paused_until == T + 1200
    assert third.camera.version == second.camera.version
    capped = await any_store.object(
        "cam-a", receipt_id="d" * 32, now=T + 302, pause_s=86_400, max_pause_s=3600, check=ok
    )
    assert capped.paused_until == T + 302 + 3600
    record = await any_store.objection("a" * 32)
    assert record is not None
    assert (record.camera_id, record.recorded_at, record.paused_until) == ("cam-a", T, T + 900)
    assert await any_store.objection_counts(T) == {"cam-a": 4}
    assert await any_store.delete_objections_before(T + 301) == 2
    assert await any_store.objection_counts(0) == {"cam-a": 2}

    def closed(_: StoredCamera) -> None:
        raise PermissionError("not analysing")

    with pytest.raises(PermissionError):
        await any_store.object("cam-a", receipt_id="e" * 32, now=T, pause_s=60, max_pause_s=60, check=closed)
    assert await any_store.objection("e" * 32) is None


async def test_ended_authorisations_are_found(any_store: RegistryStore) -> None:
    await any_store.create("station", parsed(security_declaration()), "active", SOURCE, now=T)
    await any_store.create("gate", parsed(declaration()), "active", SOURCE, now=T)
    assert await any_store.authorisations_ended(T) == []
    later = T + int(timedelta(days=10).total_seconds())
    assert await any_store.authorisations_ended(later) == ["station"]


async def test_publication_marks_and_unpublished_cameras(any_store: RegistryStore) -> None:
    camera = await any_store.create("cam-a", parsed(declaration()), "draft", SOURCE, now=T)
    assert [c.id for c in await any_store.cameras(unpublished_only=True)] == ["cam-a"]
    await any_store.mark_published("cam-a", camera.version)
    await any_store.mark_published("cam-a", camera.version - 1)  # never goes back
    assert await any_store.cameras(unpublished_only=True) == []
    stored = await any_store.camera("cam-a")
    assert stored is not None
    assert stored.published_version == camera.version


async def test_concurrent_writers_take_distinct_versions(any_store: RegistryStore) -> None:
    for i in range(4):
        await any_store.create(f"cam-{i}", parsed(declaration()), "draft", SOURCE, now=T)

    async def rename(i: int) -> int:
        _, new = await any_store.change(
            f"cam-{i % 4}",
            lambda c: replace(c, declaration=c.declaration.model_copy(update={"description": f"v{i}"})),
            now=T,
        )
        return new.version

    versions = await asyncio.gather(*(rename(i) for i in range(12)))
    assert len(set(versions)) == 12
    assert max(versions) == 16


async def test_a_database_of_the_first_migration_gains_the_view_request(any_store: RegistryStore) -> None:
    """Migration 0002 on a database with cameras: they read back without a request, then keep one; the
    tables then match the schema the store queries (and 0002 goes back down)."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from sqlalchemy import Connection

    from vigie_core.database import WRITE_OPTION
    from vigie_registry.camera import SceneViewRequest

    def alembic(connection: Connection, revision: str, down: bool = False) -> None:
        config = Config()
        config.set_main_option("script_location", "vigie_registry:migrations")
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    writer = any_store.engine.execution_options(**{WRITE_OPTION: True})
    await any_store.create("north-gate", parsed(declaration()), "active", SOURCE, now=T)
    async with writer.begin() as conn:
        await conn.run_sync(alembic, "0001", True)
    async with writer.begin() as conn:
        await conn.run_sync(alembic, "head")
    camera = await any_store.camera("north-gate")
    assert camera is not None
    assert camera.view_request is None
    wanted = SceneViewRequest("2b1c0f3e-0000-4000-8000-000000000001", T, 60)
    await any_store.change("north-gate", lambda c: replace(c, view_request=wanted), now=T + 1)
    changed = await any_store.camera("north-gate")
    assert changed is not None
    assert changed.view_request == wanted

    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), schema.metadata))

    async with any_store.engine.connect() as conn:
        assert await conn.run_sync(differences) == []
