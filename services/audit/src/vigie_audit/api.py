"""The audit API, for the DPO, an auditor or a court (OAuth2 scope ``audit:read`` by default).

    GET  /api/audit/v1/entries                    filter by camera, actor, action, service, time; paginated
    GET  /api/audit/v1/entries/{index}
    GET  /api/audit/v1/entries/by-event-id/{id}
    GET  /api/audit/v1/proofs/inclusion           ?index= or ?event_id=, &tree_size= (default: latest head)
    GET  /api/audit/v1/proofs/consistency         ?first=&second= (default: latest head)
    GET  /api/audit/v1/tree-heads/latest          the latest signed tree head and its public key
    POST /api/audit/v1/tree-heads                 sign a tree head now
    GET  /api/audit/v1/public-key

Every call is itself recorded as an ``audit_read`` event through the same path as any service's events
(the AUDIT stream), with the caller's pseudonymous id and the optional ``motive`` parameter; if it
cannot be recorded, nothing is returned (503). Malformed parameters give 422 naming the parameter;
unknown parameters too, so a misspelt filter never silently returns everything. While the database is
unreachable, calls get 503 with ``Retry-After``.
"""

# No "from __future__ import annotations": the routes' annotations name a dependency local to
# AuditApi.router() (its scope is a setting), which FastAPI can only resolve when they are evaluated there.
import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import AfterValidator, AwareDatetime

from vigie_audit.journal import entry_document, pruned_entry_document
from vigie_audit.merkle import ProofRequestError
from vigie_audit.signer import TreeHeadSigner
from vigie_audit.store import EntryFilter, JournalCorruptError, JournalStore, StoredEntry
from vigie_audit.tree_head import SignedTreeHead, public_key_pem
from vigie_core.api_docs import install_docs
from vigie_core.audit import (
    AuditAction,
    AuditPublisher,
    AuditUnavailableError,
    InvalidAuditEventError,
    RecordRef,
    action_names,
)
from vigie_core.auth import Principal, TokenVerifier, install_authentication, require_scopes
from vigie_core.database import answer_outages_with_503

API_PREFIX = "/api/audit/v1"
_DESCRIPTION = """
The audit journal of Vigie: every configuration, model version, export and read of statistics, in an
append-only Merkle tree (RFC 9162) with signed tree heads (Ed25519), inclusion and consistency proofs.

**Access.** OAuth2 bearer token with the `audit:read` scope. Every call is itself recorded in the journal,
with the `motive` you give.
"""

_TOKEN = r"^[A-Za-z0-9_-]{1,64}$"
# Text the database can compare: PostgreSQL refuses NUL in text, and no actor has control characters.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
_DEFAULT_MOTIVE = "audit journal consultation (no motive given)"
_MAX_LIMIT = 1000
# Indexes and tree sizes are BIGINT columns: larger numbers cannot name an entry, and a database driver
# refuses to bind them (a 500 instead of a 422).
_MAX_INDEX = 2**63 - 1


def _utc(value: datetime) -> datetime:
    """A time the journal can compare with its UTC times (year 1 at +01:00 is before any UTC time)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of the range of times (years 1 to 9999 in UTC)") from None


Moment = Annotated[AwareDatetime, AfterValidator(_utc)]
Index = Annotated[int, Path(ge=0, le=_MAX_INDEX, description="an entry's index (0 is the first)")]


def _invalid(field: str, message: str) -> HTTPException:
    # The shape of FastAPI's own validation errors, so clients handle one format.
    return HTTPException(422, [{"loc": ["query", field], "msg": message, "type": "value_error"}])


def _only_query_parameters(*allowed: str) -> Callable[[Request], None]:
    names = frozenset(allowed)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - names)
        if unknown:
            raise _invalid(unknown[0], f"unknown parameter; known: {', '.join(sorted(names))}")

    return check


def _document(entry: StoredEntry) -> dict[str, Any]:
    if entry.leaf_hash is None:
        raise JournalCorruptError(f"entry {entry.index} has no leaf hash: run 'python -m vigie_audit verify'")
    if entry.leaf is not None:
        return entry_document(entry.index, entry.leaf, entry.leaf_hash)
    return pruned_entry_document(
        entry.index,
        entry.event_id,
        entry.logged_at,
        entry.service,
        entry.action,
        entry.pruned_at,
        entry.leaf_hash,
    )


def _tree_head_document(signed: SignedTreeHead) -> dict[str, Any]:
    return {**signed.to_json(), "public_key_pem": public_key_pem(signed.public_key)}


Motive = Annotated[str | None, Query(min_length=1, max_length=500, description="why you consult the journal")]


@dataclass(frozen=True, slots=True)
class AuditApi:
    store: JournalStore
    signer: TreeHeadSigner
    publisher: AuditPublisher
    read_scope: str = "audit:read"

    async def _record_read(
        self,
        principal: Principal,
        request: Request,
        motive: str | None,
        *,
        camera_ids: Iterable[str] = (),
        records: Iterable[tuple[str, str]] = (),
        details: Mapping[str, str] | None = None,
    ) -> None:
        try:
            await self.publisher.record(
                AuditAction.AUDIT_ACTION_AUDIT_READ,
                actor=principal.subject,
                motive=motive or _DEFAULT_MOTIVE,
                camera_ids=camera_ids,
                records=[RecordRef(kind=k, id=i) for k, i in records],
                details={"request": f"{request.method} {request.url.path}", **(details or {})},
            )
        except InvalidAuditEventError as error:
            raise HTTPException(403, f"this request cannot be recorded in the journal: {error}") from None
        except AuditUnavailableError:
            raise HTTPException(
                503, "this consultation cannot be recorded in the journal right now"
            ) from None

    async def _signed_size(self, field: str) -> int:
        head = await self.store.latest_tree_head()
        if head is None:
            raise _invalid(field, "no tree head is signed yet: give it, or POST /api/audit/v1/tree-heads")
        return head.head.tree_size

    def router(self) -> APIRouter:
        reader = require_scopes(self.read_scope)
        Reader = Annotated[Principal, Depends(reader)]  # noqa: N806 - a type alias, FastAPI style
        router = APIRouter(prefix=API_PREFIX, tags=["audit"], dependencies=[Depends(reader)])

        @router.get(
            "/entries",
            dependencies=[
                Depends(
                    _only_query_parameters(
                        "camera",
                        "actor",
                        "action",
                        "service",
                        "since",
                        "until",
                        "from_index",
                        "limit",
                        "motive",
                    )
                )
            ],
        )
        async def list_entries(
            request: Request,
            principal: Reader,
            motive: Motive = None,
            camera: Annotated[str | None, Query(pattern=_TOKEN)] = None,
            actor: Annotated[str | None, Query(min_length=1, max_length=128, pattern=_PRINTABLE)] = None,
            action: Annotated[str | None, Query(description="e.g. data_read, config_update")] = None,
            service: Annotated[str | None, Query(pattern=_TOKEN)] = None,
            since: Annotated[Moment | None, Query(description="occurred at or after (ISO 8601)")] = None,
            until: Annotated[Moment | None, Query(description="occurred before (ISO 8601)")] = None,
            from_index: Annotated[int, Query(ge=0, le=_MAX_INDEX)] = 0,
            limit: Annotated[int, Query(ge=1, le=_MAX_LIMIT)] = 100,
        ) -> dict[str, Any]:
            if action is not None and action not in action_names():
                raise _invalid("action", f"unknown action; known: {', '.join(action_names())}")
            if since is not None and until is not None and since >= until:
                raise _invalid("until", "must be after since")
            where = EntryFilter(camera, actor, action, service, since, until)
            found = await self.store.entries(where, from_index, limit + 1)
            page = found[:limit]
            filters = {
                k: str(v)
                for k, v in (
                    ("camera", camera),
                    ("actor", actor),
                    ("action", action),
                    ("service", service),
                    ("since", since),
                    ("until", until),
                )
                if v is not None
            }
            await self._record_read(
                principal,
                request,
                motive,
                camera_ids=[camera] if camera else [],
                records=[("audit_entries", f"{page[0].index}-{page[-1].index}")] if page else [],
                details={**{f"filter.{k}": v for k, v in filters.items()}, "returned": str(len(page))},
            )
            return {
                "entries": [_document(e) for e in page],
                "next_from_index": found[limit].index if len(found) > limit else None,
            }

        @router.get(
            "/entries/by-event-id/{event_id}", dependencies=[Depends(_only_query_parameters("motive"))]
        )
        async def entry_by_event_id(
            request: Request, principal: Reader, event_id: UUID, motive: Motive = None
        ) -> dict[str, Any]:
            entry = await self.store.entry_by_event_id(str(event_id))
            if entry is None:
                raise HTTPException(404, f"no entry has event id {event_id}")
            await self._record_read(principal, request, motive, records=[("audit_entries", str(entry.index))])
            return _document(entry)

        @router.get("/entries/{index}", dependencies=[Depends(_only_query_parameters("motive"))])
        async def entry_at(
            request: Request, principal: Reader, index: Index, motive: Motive = None
        ) -> dict[str, Any]:
            entry = await self.store.entry(index)
            if entry is None:
                raise HTTPException(404, f"no entry has index {index}")
            await self._record_read(principal, request, motive, records=[("audit_entries", str(index))])
            return _document(entry)

        @router.get(
            "/proofs/inclusion",
            dependencies=[Depends(_only_query_parameters("index", "event_id", "tree_size", "motive"))],
        )
        async def inclusion_proof(
            request: Request,
            principal: Reader,
            motive: Motive = None,
            index: Annotated[int | None, Query(ge=0, le=_MAX_INDEX)] = None,
            event_id: UUID | None = None,
            tree_size: Annotated[int | None, Query(ge=1, le=_MAX_INDEX)] = None,
        ) -> dict[str, Any]:
            if (index is None) == (event_id is None):
                raise _invalid("index", "give exactly one of index and event_id")
            if event_id is not None:
                entry = await self.store.entry_by_event_id(str(event_id))
                if entry is None:
                    raise HTTPException(404, f"no entry has event id {event_id}")
                index = entry.index
            assert index is not None
            size = tree_size if tree_size is not None else await self._signed_size("tree_size")
            if index >= size:
                raise _invalid("tree_size", f"entry {index} is not in a tree of {size} entries")
            try:
                proof = await self.store.prove_inclusion(index, size)
            except ProofRequestError as error:
                raise _invalid(error.field or "tree_size", str(error)) from None
            await self._record_read(
                principal,
                request,
                motive,
                records=[("audit_entries", str(index))],
                details={"tree_size": str(size)},
            )
            return proof.to_json()

        @router.get(
            "/proofs/consistency", dependencies=[Depends(_only_query_parameters("first", "second", "motive"))]
        )
        async def consistency_proof(
            request: Request,
            principal: Reader,
            first: Annotated[int, Query(ge=0, le=_MAX_INDEX)],
            motive: Motive = None,
            second: Annotated[int | None, Query(ge=0, le=_MAX_INDEX)] = None,
        ) -> dict[str, Any]:
            size = second if second is not None else await self._signed_size("second")
            if first > size:
                raise _invalid("first", f"must not be larger than second ({size})")
            try:
                proof = await self.store.prove_consistency(first, size)
            except ProofRequestError as error:
                raise _invalid(error.field or "second", str(error)) from None
            await self._record_read(
                principal, request, motive, details={"first": str(first), "second": str(size)}
            )
            return proof.to_json()

        @router.get("/tree-heads/latest", dependencies=[Depends(_only_query_parameters("motive"))])
        async def latest_tree_head(
            request: Request, principal: Reader, motive: Motive = None
        ) -> dict[str, Any]:
            head = await self.store.latest_tree_head()
            if head is None:
                raise HTTPException(404, "no tree head is signed yet")
            await self._record_read(
                principal, request, motive, details={"tree_size": str(head.head.tree_size)}
            )
            return _tree_head_document(head)

        @router.post("/tree-heads", status_code=201, dependencies=[Depends(_only_query_parameters("motive"))])
        async def sign_tree_head(
            request: Request, principal: Reader, motive: Motive = None
        ) -> dict[str, Any]:
            await self._record_read(principal, request, motive, details={"operation": "sign tree head"})
            return _tree_head_document(await self.signer.sign_now())

        @router.get("/public-key", dependencies=[Depends(_only_query_parameters("motive"))])
        async def public_key(request: Request, principal: Reader, motive: Motive = None) -> dict[str, Any]:
            await self._record_read(principal, request, motive)
            key = self.signer.key
            return {
                "algorithm": "Ed25519",
                "key_id": key.key_id,
                "public_key": base64.b64encode(key.public_key).decode(),
                "public_key_pem": key.public_key_pem(),
            }

        return router

    def app(self, verifier: TokenVerifier) -> FastAPI:
        """The API as an application of its own, with its OpenAPI document and interactive documentation
        under ``/api/audit/v1`` (the service mounts it at its root, after its health routes)."""
        app = FastAPI(
            title="Vigie audit API",
            version="1.0.0",
            description=_DESCRIPTION,
            openapi_url=f"{API_PREFIX}/openapi.json",
            docs_url=None,
            redoc_url=None,
        )
        install_docs(app, docs_url=f"{API_PREFIX}/docs")
        install_authentication(app, verifier)
        answer_outages_with_503(app)
        app.include_router(self.router())
        return app
