"""The registry's store: cameras, their policy versions, objections; SQLite or PostgreSQL.

Every change of a camera is one write transaction that takes the next value of the policy sequence, writes
the row, runs the caller's ``before_commit`` (the audit event: if it cannot be recorded, nothing is
changed) and commits. Publishing the policy to the bucket happens after the commit; ``published_version``
records what reached it, and whatever did not is published again by the reconciler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vigie_core.database import WRITE_OPTION, make_engine, migrate
from vigie_registry.camera import SceneViewRequest, StoredCamera
from vigie_registry.declaration import CameraDeclaration, SourceDeclaration
from vigie_registry.storage import schema

__all__ = [
    "BeforeCommit",
    "CameraExistsError",
    "CameraNotFoundError",
    "ObjectionOutcome",
    "ObjectionRecord",
    "RegistryStore",
    "SourceCipher",
    "UnreadableSourceError",
]


class CameraExistsError(Exception):
    pass


class CameraNotFoundError(Exception):
    pass


class UnreadableSourceError(Exception):
    """A stored source URL that the configured key cannot decrypt."""


class SourceCipher:
    """Seals the source URLs at rest with Fernet (AES-128-CBC + HMAC-SHA256) when a key is configured.

    Without a key they are stored as they are (marked ``plain:``) and sealed at their next change once a
    key is set. A key is a Fernet key: ``python -m vigie_registry keygen``.
    """

    def __init__(self, key: str | None = None) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    @property
    def sealing(self) -> bool:
        return self._fernet is not None

    def seal(self, url: str) -> str:
        if self._fernet is None:
            return f"plain:{url}"
        return f"fernet:{self._fernet.encrypt(url.encode()).decode()}"

    def token(self, url: str) -> bytes:
        """``url`` sealed as a Fernet token for ingest (bucket ``vigie-sources``); never without a key."""
        if self._fernet is None:
            raise UnreadableSourceError("no source_key is configured: a source URL is never sent unsealed")
        return self._fernet.encrypt(url.encode())

    def open_token(self, token: bytes) -> str:
        """The URL in a token made by :meth:`token` with the same key."""
        if self._fernet is None:
            raise UnreadableSourceError("no source_key is configured")
        try:
            return self._fernet.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UnreadableSourceError("the token does not open with the configured source_key") from None

    def open(self, stored: str) -> str:
        kind, _, value = stored.partition(":")
        if kind == "plain":
            return value
        if self._fernet is None:
            raise UnreadableSourceError("the source URL is encrypted and no source_key is configured")
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            raise UnreadableSourceError(
                "the source URL does not decrypt with the configured source_key"
            ) from None


@dataclass(frozen=True, slots=True)
class ObjectionOutcome:
    camera: StoredCamera
    receipt_id: str
    recorded_at: int
    paused_until: int
    # The camera was already paused by an earlier objection: the pause was extended, not stacked.
    extended: bool


@dataclass(frozen=True, slots=True)
class ObjectionRecord:
    receipt_id: str
    camera_id: str
    recorded_at: int
    paused_until: int
    extended: bool


BeforeCommit = Callable[[StoredCamera | None, StoredCamera | None], Awaitable[None]]


async def _nothing(_old: StoredCamera | None, _new: StoredCamera | None) -> None:
    return None


def _camera(row: Row[Any]) -> StoredCamera:
    return StoredCamera(
        id=row.camera_id,
        declaration=CameraDeclaration.model_validate_json(row.declaration),
        source_display=row.source_display,
        source_has_credentials=bool(row.source_has_credentials),
        status=row.status,
        status_reason=row.status_reason,
        version=int(row.version),
        published_version=int(row.published_version),
        paused_until=None if row.paused_until is None else int(row.paused_until),
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
        view_request=None
        if row.view_request_id is None
        else SceneViewRequest(row.view_request_id, int(row.view_requested_at), int(row.view_sample_seconds)),
    )


def _authorised_until(camera: StoredCamera) -> int | None:
    events = camera.declaration.security_events
    if camera.declaration.purpose != "security_events" or events is None:
        return None
    return int(events.authorised_until.timestamp())


def _row(camera: StoredCamera) -> dict[str, Any]:
    view = camera.view_request
    return {
        "camera_id": camera.id,
        "name": camera.declaration.name,
        "purpose": camera.declaration.purpose,
        "status": camera.status,
        "status_reason": camera.status_reason,
        "declaration": camera.declaration.model_dump_json(),
        "source_display": camera.source_display,
        "source_has_credentials": camera.source_has_credentials,
        "version": camera.version,
        "published_version": camera.published_version,
        "paused_until": camera.paused_until,
        "authorised_until": _authorised_until(camera),
        "created_at": camera.created_at,
        "updated_at": camera.updated_at,
        "view_request_id": view.request_id if view else None,
        "view_requested_at": view.requested_at if view else None,
        "view_sample_seconds": view.sample_seconds if view else None,
    }


class RegistryStore:
    def __init__(self, engine: AsyncEngine, cipher: SourceCipher | None = None) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._cipher = cipher or SourceCipher()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema_name: str | None = None,
        cipher: SourceCipher | None = None,
        run_migrations: bool = True,
    ) -> RegistryStore:
        engine = make_engine(url, schema_name=schema_name)
        if run_migrations:
            await migrate(engine, "vigie_registry")
        return cls(engine, cipher)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # -- reading -----------------------------------------------------------------------------------------

    async def camera(self, camera_id: str) -> StoredCamera | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(schema.cameras).where(schema.cameras.c.camera_id == camera_id))
            ).first()
        return None if row is None else _camera(row)

    async def cameras(self, *, unpublished_only: bool = False) -> list[StoredCamera]:
        query = select(schema.cameras).order_by(schema.cameras.c.camera_id)
        if unpublished_only:
            query = query.where(schema.cameras.c.published_version < schema.cameras.c.version)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_camera(row) for row in rows]

    async def source_url(self, camera_id: str) -> str:
        """The camera's source URL in full (a secret: for ingest, never for the API or the logs)."""
        async with self._engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(schema.cameras.c.source_secret).where(schema.cameras.c.camera_id == camera_id)
                )
            ).scalar_one_or_none()
        if stored is None:
            raise CameraNotFoundError(camera_id)
        return self._cipher.open(stored)

    async def authorisations_ended(self, now: int) -> list[str]:
        """Active security_events cameras whose authorisation has ended."""
        c = schema.cameras.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(c.camera_id)
                .where(c.status == "active", c.authorised_until.is_not(None), c.authorised_until <= now)
                .order_by(c.camera_id)
            )
            return list(rows.scalars())

    # -- writing -----------------------------------------------------------------------------------------

    async def _next_version(self, conn: AsyncConnection) -> int:
        # The UPDATE locks the row until commit: concurrent writers take versions one after the other.
        await conn.execute(
            update(schema.policy_sequence)
            .where(schema.policy_sequence.c.name == "policy")
            .values(value=schema.policy_sequence.c.value + 1)
        )
        value = (
            await conn.execute(
                select(schema.policy_sequence.c.value).where(schema.policy_sequence.c.name == "policy")
            )
        ).scalar_one()
        return int(value)

    async def _locked(self, conn: AsyncConnection, camera_id: str) -> StoredCamera:
        row = (
            await conn.execute(
                select(schema.cameras).where(schema.cameras.c.camera_id == camera_id).with_for_update()
            )
        ).first()
        if row is None:
            raise CameraNotFoundError(camera_id)
        return _camera(row)

    async def create(
        self,
        camera_id: str,
        declaration: CameraDeclaration,
        status: Any,
        source: SourceDeclaration,
        *,
        now: int,
        before_commit: BeforeCommit = _nothing,
    ) -> StoredCamera:
        try:
            async with self._writer.begin() as conn:
                exists = (
                    await conn.execute(select(func.count()).where(schema.cameras.c.camera_id == camera_id))
                ).scalar_one()
                if exists:
                    raise CameraExistsError(camera_id)
                camera = StoredCamera(
                    id=camera_id,
                    declaration=declaration,
                    source_display=source.display_url,
                    source_has_credentials=source.has_credentials,
                    status=status,
                    status_reason="",
                    version=await self._next_version(conn),
                    published_version=0,
                    paused_until=None,
                    created_at=now,
                    updated_at=now,
                )
                row = _row(camera) | {"source_secret": self._cipher.seal(source.url.get_secret_value())}
                await conn.execute(insert(schema.cameras).values(**row))
                # Declared again: the key it had in the bucket is written, not deleted.
                await conn.execute(
                    delete(schema.policy_tombstones).where(schema.policy_tombstones.c.camera_id == camera_id)
                )
                await before_commit(None, camera)
        except IntegrityError:
            raise CameraExistsError(camera_id) from None
        return camera

    async def change(
        self,
        camera_id: str,
        change: Callable[[StoredCamera], StoredCamera],
        *,
        now: int,
        source: SourceDeclaration | None = None,
        before_commit: BeforeCommit = _nothing,
    ) -> tuple[StoredCamera, StoredCamera]:
        """Apply ``change`` (which may raise to refuse) to the camera; (before, after).

        Nothing is written when the change changes nothing (and the source is not given).
        """
        async with self._writer.begin() as conn:
            old = await self._locked(conn, camera_id)
            new = change(old)
            if source is not None:
                new = replace(
                    new, source_display=source.display_url, source_has_credentials=source.has_credentials
                )
            if new == old and source is None:
                return old, old
            new = replace(new, version=await self._next_version(conn), updated_at=now)
            values = _row(new)
            if source is not None:
                values["source_secret"] = self._cipher.seal(source.url.get_secret_value())
            await conn.execute(
                update(schema.cameras).where(schema.cameras.c.camera_id == camera_id).values(**values)
            )
            await before_commit(old, new)
        return old, new

    async def delete(self, camera_id: str, *, before_commit: BeforeCommit = _nothing) -> StoredCamera:
        async with self._writer.begin() as conn:
            old = await self._locked(conn, camera_id)
            version = await self._next_version(conn)
            await conn.execute(delete(schema.cameras).where(schema.cameras.c.camera_id == camera_id))
            await conn.execute(
                delete(schema.policy_tombstones).where(schema.policy_tombstones.c.camera_id == camera_id)
            )
            await conn.execute(insert(schema.policy_tombstones).values(camera_id=camera_id, version=version))
            await before_commit(old, None)
        return old

    async def object(
        self,
        camera_id: str,
        *,
        receipt_id: str,
        now: int,
        pause_s: int,
        max_pause_s: int,
        check: Callable[[StoredCamera], None],
        before_commit: BeforeCommit = _nothing,
    ) -> ObjectionOutcome:
        """Record an objection and pause the camera: until ``now + pause_s``, extending (never stacking)
        a pause in progress, and never beyond ``now + max_pause_s``."""
        async with self._writer.begin() as conn:
            old = await self._locked(conn, camera_id)
            check(old)
            current = old.paused_until if old.paused_until is not None and old.paused_until > now else None
            until = min(max(current or 0, now + pause_s), now + max_pause_s)
            new = old
            if until != old.paused_until:
                new = replace(old, paused_until=until, version=await self._next_version(conn), updated_at=now)
                await conn.execute(
                    update(schema.cameras)
                    .where(schema.cameras.c.camera_id == camera_id)
                    .values(paused_until=until, version=new.version, updated_at=now)
                )
            await conn.execute(
                insert(schema.objections).values(
                    receipt_id=receipt_id,
                    camera_id=camera_id,
                    recorded_at=now,
                    paused_until=until,
                    extended=current is not None,
                )
            )
            await before_commit(old, new)
        return ObjectionOutcome(new, receipt_id, now, until, current is not None)

    async def objection(self, receipt_id: str) -> ObjectionRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(schema.objections).where(schema.objections.c.receipt_id == receipt_id)
                )
            ).first()
        if row is None:
            return None
        return ObjectionRecord(
            row.receipt_id, row.camera_id, int(row.recorded_at), int(row.paused_until), bool(row.extended)
        )

    async def objection_counts(self, since: int) -> dict[str, int]:
        """Objections per camera recorded since ``since`` (for the register and the DPO)."""
        o = schema.objections.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(o.camera_id, func.count()).where(o.recorded_at >= since).group_by(o.camera_id)
            )
            return {camera: int(count) for camera, count in rows.all()}

    async def delete_objections_before(self, before: int) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(schema.objections).where(schema.objections.c.recorded_at < before)
            )
        return int(result.rowcount or 0)

    # -- publication -------------------------------------------------------------------------------------

    async def mark_published(self, camera_id: str, version: int) -> None:
        c = schema.cameras.c
        async with self._writer.begin() as conn:
            await conn.execute(
                update(schema.cameras)
                .where(c.camera_id == camera_id, c.published_version < version)
                .values(published_version=version)
            )

    async def tombstones(self) -> list[tuple[str, int]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(schema.policy_tombstones.c.camera_id, schema.policy_tombstones.c.version)
            )
            return [(camera, int(version)) for camera, version in rows.all()]

    async def drop_tombstone(self, camera_id: str, version: int) -> None:
        t = schema.policy_tombstones.c
        async with self._writer.begin() as conn:
            await conn.execute(
                delete(schema.policy_tombstones).where(t.camera_id == camera_id, t.version == version)
            )

    async def camera_ids(self) -> set[str]:
        async with self._engine.connect() as conn:
            return set((await conn.execute(select(schema.cameras.c.camera_id))).scalars())
