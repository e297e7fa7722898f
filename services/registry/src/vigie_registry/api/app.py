"""The registry HTTP API: cameras (admin), exports (DPO), and the public objection endpoint.

Thin edge: each route checks its input (FastAPI's 422 naming the field; the privacy rules of
:mod:`vigie_registry.rules` add a 422 whose items name the rule), calls the store inside one transaction
whose commit waits for the audit event to be buffered, publishes the camera's policy, and encodes.

- Scopes: ``registry:admin`` declares and changes cameras; ``registry:read`` (or admin, or DPO) reads
  them; ``registry:dpo`` (or admin) exports the register and DPIA documents. No or a bad token: 401; a
  token without the scope: 403.
- Motive: every change and export says why (``X-Vigie-Motive`` header or ``motive=``), recorded in the
  audit journal with the operator's pseudonymous id (docs/privacy.md rule 20).
- Audit: ``config_create``, ``config_update``, ``config_delete``, ``policy_change`` (purpose, legal
  fields, status, masks, outputs...), ``data_export`` (confirmed stored before the export leaves),
  ``objection_honoured``. What cannot be audited is refused (503).
- Public, no login: ``/public/...``: the cameras in operation and their live state, the objection, and
  receipt verification. Nothing there identifies anyone; the client's address only feeds the in-memory
  rate limit. A browser's objection from another site's page is refused (403): see
  :func:`vigie_registry.objections.cross_site`. The transparency page's button goes through the same
  :class:`~vigie_registry.right_to_object.ObjectionDesk`.
- Scene views (admin): ask for a view of a camera's scene without its people (``POST
  /cameras/{id}/view-requests``, audited as a policy change with its motive; at most one per camera every
  ``views.min_interval_s``, else 429), see where it stands (``GET /cameras/{id}/view``) and read the picture
  (``GET /cameras/{id}/view.jpg``, a ``data_read`` confirmed stored before it leaves):
  :mod:`vigie_registry.views`.
- A validation error never echoes its input (a body may hold the source's credentials).
"""

# No "from __future__ import annotations": FastAPI must see the routes' annotations as objects, and they
# refer to the factory's locals (the scopes are settings).
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from vigie_core.api_docs import install_docs
from vigie_core.audit import (
    AuditAction,
    AuditPublisher,
    AuditUnavailableError,
    InvalidAuditEventError,
)
from vigie_core.auth import Principal, TokenVerifier, install_authentication, require_scopes
from vigie_registry.api.models import (
    CameraOut,
    CameraPage,
    NamedDescription,
    ObjectionReceipt,
    ObjectionRequest,
    PublicCamera,
    PublicCameraPage,
    PurposeOut,
    PurposesPage,
    ReceiptCheck,
    ReceiptVerdict,
    SceneViewOut,
    SourceOut,
    StatusChange,
    ViewRequestAccepted,
    ViewRequestBody,
    policy_document,
)
from vigie_registry.camera import StoredCamera, build_policy
from vigie_registry.declaration import (
    CameraCreate,
    CameraDeclaration,
    CameraStatusName,
    CameraWrite,
    declaration_of,
)
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import (
    ClientRateLimiter,
    Receipt,
    ReceiptSigner,
    client_address,
    cross_site,
)
from vigie_registry.publication import CameraPublisher
from vigie_registry.purposes import OUTPUTS, PURPOSES, SECURITY_EVENT_KINDS
from vigie_registry.register import dpia_document, processing_register, register_csv, register_entry
from vigie_registry.right_to_object import (
    PUBLIC_ACTOR,
    NotHonouredError,
    ObjectionDesk,
    PauseTooLongError,
    RateLimitedError,
)
from vigie_registry.rules import RuleViolation, check_declaration, check_transition
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import CameraExistsError, CameraNotFoundError, RegistryStore
from vigie_registry.views import (
    ANSWER_WITHIN_S,
    CameraNotAnalysedError,
    MemoryViewReader,
    SceneView,
    SceneViews,
    TooSoonError,
    ViewReader,
    ViewsUnavailableError,
)

__all__ = ["PUBLIC_ACTOR", "CameraOperations", "registry_app"]

logger = logging.getLogger("vigie.registry.api")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON = "application/json"
_CSV = "text/csv"
_MARKDOWN = "text/markdown"
_JPEG = "image/jpeg"
# Fields whose change changes what is analysed or on which grounds: a policy change (docs/privacy.md,
# section F).
_POLICY_FIELDS = frozenset(
    {
        "purpose",
        "outputs",
        "object_classes",
        "audio",
        "lines",
        "zones",
        "masks",
        "sample_fps",
        "reporting_window_s",
        "anchor",
        "dwell_buckets_s",
        "legal",
        "retention",
        "security_events",
        "objection",
    }
)

_ERROR = {"content": {_JSON: {"example": {"detail": "..."}}}}
_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no bearer token, or an invalid one", **_ERROR},
    403: {"description": "the token lacks the scope", **_ERROR},
    503: {
        "description": "the action cannot be audited now (or the identity provider is down): refused",
        **_ERROR,
    },
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown camera", **_ERROR}}
_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "the camera's state does not allow it", **_ERROR},
    422: {
        "description": "a field is wrong or a privacy rule refuses it; each item names the field and the rule"
    },
}

_DESCRIPTION = """
The registry of Vigie's cameras: what each camera is for, on which legal basis, what it may produce, where
it counts and what it must never see — and the citizens' right to object.

**Admin** (`registry:admin`): declare cameras, their purpose from a closed list, lines, zones, privacy
masks, legal and DPIA fields, retention; activate, pause and retire them. A declaration that breaks a rule
of Vigie's privacy rules (identification, characterisation of people, re-identification, sound, a purpose
outside the closed list, activation without a DPIA reference, security events without a legal text and an
authorisation window, excessive retention...) is refused with a 422 whose items name the field and the rule.

**DPO** (`registry:dpo`): the processing register (GDPR art. 30) in JSON or CSV, and a DPIA starting
document per camera.

**Views** (`registry:admin`): ask for a view of a camera's scene without its people, built inside the
boundary by the inference replica analysing it, to draw counting lines on; see where the request stands and
read the picture.

**Public** (no login): the cameras in operation and whether they are analysing now, the objection that
pauses a camera at once without identifying anyone, and the verification of an objection's receipt.

Every change and export says why (`X-Vigie-Motive` header or `motive=`) and is written to the audit
journal.
"""


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _invalid(location: str, field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": [location, field], "msg": message, "type": "value_error"}])


class _NotHonouredError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _refuse(violations: Iterable[RuleViolation], metrics: RegistryMetrics) -> NoReturn:
    items = list(violations)
    for violation in items:
        metrics.refused.labels(violation.rule_name).inc()
    raise HTTPException(422, [v.as_error() for v in items])


def _changed_fields(old: StoredCamera, new: StoredCamera) -> list[str]:
    before = old.declaration.model_dump(mode="json")
    after = new.declaration.model_dump(mode="json")
    changed = sorted(k for k in after if before.get(k) != after.get(k))
    if old.status != new.status:
        changed.append("status")
    if (old.source_display, old.source_has_credentials) != (new.source_display, new.source_has_credentials):
        changed.append("source")
    return changed


def _justifications(declaration: CameraDeclaration) -> dict[str, str]:
    """The written justifications of less protective settings: audited with the change (rule 8)."""
    texts = {
        "reporting_window_justification": declaration.reporting_window_justification,
        "sample_fps_justification": declaration.sample_fps_justification,
        "retention.track_justification": declaration.retention.track_justification,
        "retention.statistics_justification": declaration.retention.statistics_justification,
    }
    return {f"justification.{k}": " ".join(v.split())[:1000] for k, v in texts.items() if v.strip()}


@contextlib.contextmanager
def _journal_required() -> Iterator[None]:
    """What the audit journal cannot record is refused: 403 for an event it would reject, 503 while it
    cannot be reached."""
    try:
        yield
    except InvalidAuditEventError as error:
        raise HTTPException(403, f"this request cannot be recorded in the audit journal: {error}") from None
    except AuditUnavailableError:
        raise HTTPException(503, "this action cannot be recorded in the audit journal now: refused") from None


@dataclass(frozen=True, slots=True)
class CameraOperations:
    """What the operator console (:mod:`vigie_registry.console`) does through the API's own code paths, so
    that a change made there is checked, audited and published exactly as through ``/v1``: each raises the
    API's :class:`~fastapi.HTTPException` (status and detail) when refused. ``registry_app`` leaves them in
    ``app.state.operations``."""

    # (camera_id, principal, motive, action, modify) -> the camera after the change.
    change: Callable[[str, Principal, str, str, Callable[[StoredCamera], StoredCamera]], Awaitable[CameraOut]]
    # (camera_id, principal, motive, sample_seconds) -> the accepted request.
    request_view: Callable[[str, Principal, str, int | None], Awaitable[ViewRequestAccepted]]
    view: Callable[[StoredCamera], Awaitable[SceneView]]
    # (camera_id, principal, motive) -> the JPEG, its read confirmed in the journal.
    view_picture: Callable[[str, Principal, str], Awaitable[bytes]]


def registry_app(
    *,
    store: RegistryStore,
    publisher: CameraPublisher,
    audit: AuditPublisher,
    verifier: TokenVerifier,
    settings: RegistrySettings,
    signer: ReceiptSigner,
    limiter: ClientRateLimiter | None = None,
    metrics: RegistryMetrics | None = None,
    clock: Callable[[], float] = time.time,
    desk: ObjectionDesk | None = None,
    views: ViewReader | None = None,
) -> FastAPI:
    """The API as a FastAPI application (the service mounts it under ``/v1``).

    ``desk`` honours objections; pass the one the transparency page uses so that both share the abuse
    limits (without it, one is built from ``limiter``). ``views``: where inference's scene views are read
    (the stream VIEWS; without it, an empty in-memory one: every request stays pending); the
    :class:`~vigie_registry.views.SceneViews` reading them is left in ``app.state.scene_views`` for the
    transparency page.
    """
    app = FastAPI(
        title="Vigie registry API",
        version="1.0.0",
        description=_DESCRIPTION,
        openapi_tags=[
            {"name": "cameras", "description": "declarations (admin)"},
            {"name": "exports", "description": "the processing register and DPIA documents (DPO)"},
            {"name": "views", "description": "views of a camera's scene without its people (admin)"},
            {"name": "public", "description": "no login: live state and the right to object"},
        ],
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)  # /docs, with nothing loaded from a CDN
    install_authentication(app, verifier)
    metrics = metrics or RegistryMetrics()
    objection = settings.objection
    desk = desk or ObjectionDesk(
        store=store,
        publisher=publisher,
        audit=audit,
        signer=signer,
        settings=objection,
        limiter=limiter,
        metrics=metrics,
        clock=clock,
    )
    scene_views = SceneViews(
        store=store,
        publisher=publisher,
        audit=audit,
        reader=views if views is not None else MemoryViewReader(),
        settings=settings.views,
        metrics=metrics,
        clock=clock,
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's shape, without "input" and "ctx": a body may hold the source's credentials.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in error.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    def any_scope(*scopes: str) -> Callable[..., Principal]:
        wanted = frozenset(scopes)
        authenticated = require_scopes()

        def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
            if not principal.scopes & wanted:
                scope = " ".join(sorted(wanted))
                raise HTTPException(
                    403,
                    f"the token needs one of the scope(s): {', '.join(sorted(wanted))}",
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer realm="vigie", error="insufficient_scope", scope="{scope}"'
                        )
                    },
                )
            return principal

        return check

    Admin = Annotated[Principal, Depends(require_scopes(settings.admin_scope))]  # noqa: N806
    Reader = Annotated[  # noqa: N806
        Principal, Depends(any_scope(settings.read_scope, settings.admin_scope, settings.dpo_scope))
    ]
    Dpo = Annotated[Principal, Depends(any_scope(settings.dpo_scope, settings.admin_scope))]  # noqa: N806
    CameraPath = Annotated[  # noqa: N806
        str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the camera id", examples=["north-gate"])
    ]

    def motive_of(
        motive: Annotated[
            str | None, Query(description="why (recorded in the audit journal); or the X-Vigie-Motive header")
        ] = None,
        header: Annotated[str | None, Header(alias="X-Vigie-Motive", description="why, as a header")] = None,
    ) -> str:
        text = (motive if motive is not None else header or "").strip()
        if not text:
            raise _invalid("query", "motive", "say why (motive= or the X-Vigie-Motive header): it is audited")
        if len(text) > 1000 or _CONTROL.search(text):
            raise _invalid("query", "motive", "at most 1000 characters, no control characters")
        return text

    Motive = Annotated[str, Depends(motive_of)]  # noqa: N806

    async def record(
        action: AuditAction.ValueType,
        actor: str,
        motive: str,
        *,
        camera_ids: Iterable[str] = (),
        records: Iterable[tuple[str, str]] = (),
        details: Mapping[str, str] | None = None,
        confirm: bool = False,
    ) -> None:
        with _journal_required():
            await audit.record(
                action,
                actor=actor,
                motive=motive,
                camera_ids=camera_ids,
                records=records,
                details=details,
                confirm=confirm,
            )

    def out(camera: StoredCamera) -> CameraOut:
        now = clock()
        return CameraOut.model_validate(
            {
                **camera.declaration.model_dump(mode="json"),
                "id": camera.id,
                "status": camera.status,
                "status_reason": camera.status_reason,
                "source": SourceOut(
                    display_url=camera.source_display, has_credentials=camera.source_has_credentials
                ),
                "version": camera.version,
                "policy_published": camera.published_version >= camera.version,
                "paused_until": _iso(camera.paused_until),
                "live_state": camera.live_state(now),
                "created_at": _iso(camera.created_at),
                "updated_at": _iso(camera.updated_at),
            }
        )

    async def existing(camera_id: str) -> StoredCamera:
        camera = await store.camera(camera_id)
        if camera is None:
            raise HTTPException(404, f"camera {camera_id!r} is not in the registry")
        return camera

    def checked(declaration: CameraDeclaration, status: CameraStatusName) -> None:
        violations = check_declaration(declaration, status, datetime.fromtimestamp(clock(), UTC))
        if violations:
            _refuse(violations, metrics)

    async def audit_change(
        principal: Principal, motive: str, old: StoredCamera | None, new: StoredCamera | None
    ) -> None:
        camera = new or old
        assert camera is not None
        records = [("camera", camera.id)]
        if old is None and new is not None:
            await record(
                AuditAction.AUDIT_ACTION_CONFIG_CREATE,
                principal.subject,
                motive,
                camera_ids=[new.id],
                records=records,
                details={
                    "version": str(new.version),
                    "status": new.status,
                    "purpose": new.declaration.purpose,
                    **_justifications(new.declaration),
                },
            )
            return
        if new is None:
            assert old is not None
            details = {"version": str(old.version), "status": old.status, "purpose": old.declaration.purpose}
            await record(
                AuditAction.AUDIT_ACTION_CONFIG_DELETE,
                principal.subject,
                motive,
                camera_ids=[old.id],
                records=records,
                details=details,
            )
            await record(
                AuditAction.AUDIT_ACTION_POLICY_CHANGE,
                principal.subject,
                motive,
                camera_ids=[old.id],
                records=records,
                details={**details, "policy": "withdrawn"},
            )
            return
        assert old is not None
        changed = _changed_fields(old, new)
        before = _justifications(old.declaration)
        justified = {k: v for k, v in _justifications(new.declaration).items() if before.get(k) != v}
        details = {
            "version": str(new.version),
            "changed": ",".join(changed)[:1000],
            "status": new.status,
            **justified,
        }
        await record(
            AuditAction.AUDIT_ACTION_CONFIG_UPDATE,
            principal.subject,
            motive,
            camera_ids=[new.id],
            records=records,
            details=details,
        )
        if set(changed) & (_POLICY_FIELDS | {"status"}):
            policy_details = {**details, "from_status": old.status, "purpose": new.declaration.purpose}
            await record(
                AuditAction.AUDIT_ACTION_POLICY_CHANGE,
                principal.subject,
                motive,
                camera_ids=[new.id],
                records=records,
                details=policy_details,
            )

    def before_commit(
        principal: Principal, motive: str
    ) -> Callable[[StoredCamera | None, StoredCamera | None], Awaitable[None]]:
        async def run(old: StoredCamera | None, new: StoredCamera | None) -> None:
            await audit_change(principal, motive, old, new)

        return run

    # -- purposes ---------------------------------------------------------------------------------------

    @app.get("/purposes", tags=["public"], summary="The closed list of purposes and what each allows")
    async def purposes() -> PurposesPage:
        return PurposesPage(
            purposes=[
                PurposeOut(
                    name=p.name,
                    title=p.title,
                    description=p.description,
                    outputs=[NamedDescription(name=o, description=OUTPUTS[o]) for o in p.outputs],
                    object_classes=list(p.object_classes),
                    needs_authorisation=p.needs_authorisation,
                )
                for p in PURPOSES.values()
            ],
            security_event_kinds=[
                NamedDescription(name=k, description=v) for k, v in SECURITY_EVENT_KINDS.items()
            ],
        )

    # -- cameras ----------------------------------------------------------------------------------------

    @app.get("/cameras", tags=["cameras"], summary="Every camera", responses=_AUTH_RESPONSES)
    async def list_cameras(principal: Reader) -> CameraPage:
        del principal  # configuration, not data about people: not an audited read
        return CameraPage(cameras=[out(c) for c in await store.cameras()])

    @app.get(
        "/cameras/{camera_id}",
        tags=["cameras"],
        summary="One camera",
        responses={**_AUTH_RESPONSES, **_NOT_FOUND},
    )
    async def get_camera(camera_id: CameraPath, principal: Reader) -> CameraOut:
        del principal
        return out(await existing(camera_id))

    @app.get(
        "/cameras/{camera_id}/policy",
        tags=["cameras"],
        summary="The camera's effective policy, as published to the policy bucket",
        responses={**_AUTH_RESPONSES, **_NOT_FOUND},
    )
    async def get_policy(camera_id: CameraPath, principal: Reader) -> dict[str, Any]:
        del principal
        return policy_document(build_policy(await existing(camera_id), clock()))

    @app.post(
        "/cameras",
        tags=["cameras"],
        summary="Declare a camera",
        status_code=201,
        responses={**_AUTH_RESPONSES, **_REFUSED, 409: {"description": "the id is taken", **_ERROR}},
    )
    async def create_camera(body: CameraCreate, principal: Admin, motive: Motive) -> CameraOut:
        declaration = declaration_of(body)
        checked(declaration, body.status)
        try:
            camera = await store.create(
                body.id,
                declaration,
                body.status,
                body.source,
                now=int(clock()),
                before_commit=before_commit(principal, motive),
            )
        except CameraExistsError:
            raise HTTPException(409, f"camera {body.id!r} is already in the registry") from None
        metrics.changes.labels("create").inc()
        await publisher.publish(camera)
        return out(await existing(camera.id))

    async def change(
        camera_id: str,
        principal: Principal,
        motive: str,
        action: str,
        modify: Callable[[StoredCamera], StoredCamera],
        source: Any = None,
    ) -> CameraOut:
        def apply(old: StoredCamera) -> StoredCamera:
            new = modify(old)
            refused = check_transition(old.status, new.status)
            if refused is not None:
                raise _NotHonouredError(refused.message)
            checked(new.declaration, new.status)
            if new.status != old.status:
                new = replace(new, status_reason="")
            return new

        try:
            old, new = await store.change(
                camera_id,
                apply,
                now=int(clock()),
                source=source,
                before_commit=before_commit(principal, motive),
            )
        except CameraNotFoundError:
            raise HTTPException(404, f"camera {camera_id!r} is not in the registry") from None
        except _NotHonouredError as error:
            raise HTTPException(409, error.message) from None
        if new is not old:
            metrics.changes.labels(action).inc()
            await publisher.publish(new)
        return out(await existing(camera_id))

    @app.put(
        "/cameras/{camera_id}",
        tags=["cameras"],
        summary="Replace a camera's declaration and status (without source: the stored one stays)",
        responses={**_AUTH_RESPONSES, **_NOT_FOUND, **_REFUSED},
    )
    async def replace_camera(
        camera_id: CameraPath, body: CameraWrite, principal: Admin, motive: Motive
    ) -> CameraOut:
        declaration = declaration_of(body)
        return await change(
            camera_id,
            principal,
            motive,
            "update",
            lambda old: replace(old, declaration=declaration, status=body.status),
            body.source,
        )

    @app.post(
        "/cameras/{camera_id}/status",
        tags=["cameras"],
        summary="Activate, pause or retire a camera",
        responses={**_AUTH_RESPONSES, **_NOT_FOUND, **_REFUSED},
    )
    async def set_status(
        camera_id: CameraPath, body: StatusChange, principal: Admin, motive: Motive
    ) -> CameraOut:
        return await change(
            camera_id, principal, motive, "status", lambda old: replace(old, status=body.status)
        )

    @app.delete(
        "/cameras/{camera_id}",
        tags=["cameras"],
        summary="Delete a camera (its policy is withdrawn: it is no longer analysed)",
        status_code=204,
        responses={**_AUTH_RESPONSES, **_NOT_FOUND},
    )
    async def delete_camera(camera_id: CameraPath, principal: Admin, motive: Motive) -> Response:
        try:
            old = await store.delete(camera_id, before_commit=before_commit(principal, motive))
        except CameraNotFoundError:
            raise HTTPException(404, f"camera {camera_id!r} is not in the registry") from None
        metrics.changes.labels("delete").inc()
        for tombstone, version in await store.tombstones():
            if tombstone == old.id:
                await publisher.withdraw(tombstone, version)
        return Response(status_code=204)

    # -- views ------------------------------------------------------------------------------------------

    async def scene_view(camera: StoredCamera) -> SceneView:
        try:
            return await scene_views.view(camera)
        except ViewsUnavailableError as error:
            raise HTTPException(503, f"the views cannot be read now: {error}") from None

    @app.post(
        "/cameras/{camera_id}/view-requests",
        tags=["views"],
        summary="Ask for a view of the camera's scene without its people (replaces any earlier request)",
        status_code=202,
        responses={
            **_AUTH_RESPONSES,
            **_NOT_FOUND,
            409: {"description": "the camera is not active: inference does not analyse it", **_ERROR},
            422: {"description": "a field is wrong; each item names it"},
            429: {
                "description": "a view of this camera was asked for too recently; see Retry-After",
                **_ERROR,
            },
        },
    )
    async def request_view(
        camera_id: CameraPath, body: ViewRequestBody, principal: Admin
    ) -> ViewRequestAccepted:
        return await ask_view(camera_id, principal, body.motive, body.sample_seconds)

    async def ask_view(
        camera_id: str, principal: Principal, motive: str, sample_seconds: int | None
    ) -> ViewRequestAccepted:
        try:
            with _journal_required():
                camera = await scene_views.request(
                    camera_id, actor=principal.subject, motive=motive, sample_seconds=sample_seconds
                )
        except CameraNotFoundError:
            raise HTTPException(404, f"camera {camera_id!r} is not in the registry") from None
        except CameraNotAnalysedError as error:
            raise HTTPException(409, error.message) from None
        except TooSoonError as error:
            raise HTTPException(429, str(error), headers={"Retry-After": str(error.retry_after_s)}) from None
        request = camera.view_request
        assert request is not None
        answer_by = request.requested_at + request.sample_seconds + ANSWER_WITHIN_S
        return ViewRequestAccepted(
            request_id=request.request_id,
            requested_at=_iso(request.requested_at) or "",
            sample_seconds=request.sample_seconds,
            state="pending",
            answer_by=_iso(answer_by) or "",
        )

    @app.get(
        "/cameras/{camera_id}/view",
        tags=["views"],
        summary="Where the camera's view stands: none, pending, ready, refused (why) or expired",
        responses={
            **_AUTH_RESPONSES,
            **_NOT_FOUND,
            503: {"description": "the views (or the audit journal) cannot be reached now", **_ERROR},
        },
    )
    async def get_view(camera_id: CameraPath, principal: Admin, request: Request) -> SceneViewOut:
        del principal  # where a request stands, not the picture: not an audited read
        camera = await existing(camera_id)
        view = await scene_view(camera)
        asked, answer = view.request, view.answer
        image_url = None
        if view.state == "ready":
            image_url = f"{request.scope.get('root_path', '')}/cameras/{camera.id}/view.jpg"
        return SceneViewOut(
            camera_id=camera.id,
            state=view.state,
            request_id=asked.request_id if asked else None,
            requested_at=_iso(asked.requested_at) if asked else None,
            sample_seconds=asked.sample_seconds if asked else None,
            answer_by=_iso(view.answer_by) if view.state == "pending" else None,
            reason=view.reason,
            built_at=(
                _iso(answer.built_at.ToNanoseconds() / 1e9)
                if answer is not None and answer.HasField("built_at")
                else None
            ),
            frames=answer.frames if answer is not None else None,
            sampled_seconds=answer.sampled_seconds if answer is not None else None,
            width=answer.image.width if view.state == "ready" and answer is not None else None,
            height=answer.image.height if view.state == "ready" and answer is not None else None,
            image_url=image_url,
        )

    @app.get(
        "/cameras/{camera_id}/view.jpg",
        tags=["views"],
        summary="The camera's view (image/jpeg): the scene without its people, for drawing lines on",
        response_class=Response,
        responses={
            **_AUTH_RESPONSES,
            200: {
                "content": {_JPEG: {"schema": {"type": "string", "format": "binary"}}},
                "description": "the view",
            },
            404: {"description": "unknown camera, or no view ready for its current request", **_ERROR},
        },
    )
    async def get_view_image(camera_id: CameraPath, principal: Admin, motive: Motive) -> Response:
        jpeg = await view_picture(camera_id, principal, motive)
        return Response(jpeg, media_type=_JPEG, headers={"Cache-Control": "no-store"})

    async def view_picture(camera_id: str, principal: Principal, motive: str) -> bytes:
        camera = await existing(camera_id)
        view = await scene_view(camera)
        jpeg = view.jpeg
        if jpeg is None or view.request is None:
            raise HTTPException(404, f"no view of camera {camera_id!r} is ready (GET its view for why)")
        await record(
            AuditAction.AUDIT_ACTION_DATA_READ,
            principal.subject,
            motive,
            camera_ids=[camera.id],
            records=[("scene_view", view.request.request_id)],
            details={"format": "jpeg", "bytes": str(len(jpeg))},
            confirm=True,
        )
        return jpeg

    app.state.operations = CameraOperations(
        change=change, request_view=ask_view, view=scene_view, view_picture=view_picture
    )
    # The transparency page shows the same views, judged by this one object (one count of what it ignores).
    app.state.scene_views = scene_views

    # -- exports ----------------------------------------------------------------------------------------

    @app.get(
        "/register",
        tags=["exports"],
        summary="The processing register (GDPR art. 30), JSON or CSV",
        responses={
            **_AUTH_RESPONSES,
            200: {"content": {_CSV: {"schema": {"type": "string"}}}},
            406: {"description": "the Accept header allows neither JSON nor CSV", **_ERROR},
        },
    )
    async def export_register(
        principal: Dpo,
        motive: Motive,
        format_: Annotated[
            Literal["json", "csv"] | None,
            Query(alias="format", description="json or csv; else the Accept header"),
        ] = None,
        accept: Annotated[str | None, Header()] = None,
    ) -> Response:
        output = _choose_format(format_, accept)
        now = clock()
        cameras = await store.cameras()
        register = processing_register(
            cameras, generated_at=now, objections=await store.objection_counts(int(now) - 365 * 86_400)
        )
        await record(
            AuditAction.AUDIT_ACTION_DATA_EXPORT,
            principal.subject,
            motive,
            camera_ids=[c.id for c in cameras],
            records=[("register", "processing-register")],
            details={"format": "csv" if output == _CSV else "json", "entries": str(len(cameras))},
            confirm=True,
        )
        if output == _CSV:
            return Response(
                register_csv(register),
                media_type=_CSV,
                headers={"Content-Disposition": 'attachment; filename="processing-register.csv"'},
            )
        return JSONResponse(register)

    @app.get(
        "/cameras/{camera_id}/dpia",
        tags=["exports"],
        summary="A DPIA starting document for the camera (Markdown)",
        response_class=Response,
        responses={
            **_AUTH_RESPONSES,
            **_NOT_FOUND,
            200: {"content": {_MARKDOWN: {"schema": {"type": "string"}}}, "description": "the document"},
        },
    )
    async def export_dpia(camera_id: CameraPath, principal: Dpo, motive: Motive) -> Response:
        camera = await existing(camera_id)
        now = clock()
        counts = await store.objection_counts(int(now) - 365 * 86_400)
        document = dpia_document(
            register_entry(camera, objections_last_year=counts.get(camera.id, 0)), generated_at=now
        )
        await record(
            AuditAction.AUDIT_ACTION_DATA_EXPORT,
            principal.subject,
            motive,
            camera_ids=[camera.id],
            records=[("dpia", camera.id)],
            details={"format": "markdown"},
            confirm=True,
        )
        return Response(
            document,
            media_type=f"{_MARKDOWN}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="dpia-{camera.id}.md"'},
        )

    # -- public -----------------------------------------------------------------------------------------

    def public(camera: StoredCamera) -> PublicCamera:
        now = clock()
        state = camera.live_state(now)
        d = camera.declaration
        return PublicCamera(
            camera_id=camera.id,
            name=d.name,
            address=d.location.address,
            latitude=d.location.latitude,
            longitude=d.location.longitude,
            purpose=d.purpose,
            purpose_title=PURPOSES[d.purpose].title,
            state=state,
            paused_until=_iso(camera.paused_until) if state == "paused_by_objection" else None,
            objection_available=d.objection.enabled and camera.status == "active",
        )

    def in_operation(camera: StoredCamera) -> bool:
        return camera.status in ("active", "paused")

    @app.get("/public/cameras", tags=["public"], summary="The cameras in operation and their live state")
    async def public_cameras() -> PublicCameraPage:
        return PublicCameraPage(cameras=[public(c) for c in await store.cameras() if in_operation(c)])

    @app.get(
        "/public/cameras/{camera_id}",
        tags=["public"],
        summary="One camera in operation and its live state",
        responses=_NOT_FOUND,
    )
    async def public_camera(camera_id: CameraPath) -> PublicCamera:
        camera = await store.camera(camera_id)
        if camera is None or not in_operation(camera):
            raise HTTPException(404, f"camera {camera_id!r} is not in operation")
        return public(camera)

    @app.post(
        "/public/cameras/{camera_id}/objections",
        tags=["public"],
        summary="Object: pause the analysis of this camera now, for a short window",
        status_code=201,
        responses={
            **_NOT_FOUND,
            409: {
                "description": "the camera is not analysing, or a legal text restricts objection",
                **_ERROR,
            },
            403: {"description": "a browser sent it from another site's page", **_ERROR},
            429: {"description": "too many objections from this client; see Retry-After", **_ERROR},
            503: {"description": "the objection cannot be recorded now", **_ERROR},
        },
    )
    async def object_to_camera(
        camera_id: CameraPath,
        request: Request,
        body: Annotated[ObjectionRequest | None, Body()] = None,
    ) -> ObjectionReceipt:
        hosts = {request.headers.get("host", "")}
        if settings.public.base_url:
            hosts.add(urlsplit(settings.public.base_url).netloc)
        if cross_site(request.headers.get("sec-fetch-site"), request.headers.get("origin"), hosts):
            raise HTTPException(
                403,
                "a browser sent this objection from another site's page: refused (object from the camera's "
                "page on this site)",
            )
        try:
            desk.check_rate(
                client_address(
                    request.client.host if request.client else None,
                    request.headers.get("x-forwarded-for"),
                    hops=objection.forwarded_hops,
                    trusted=objection.trusted_proxies,
                )
            )
            with _journal_required():
                honoured = await desk.object(camera_id, duration_s=body.duration_s if body else None)
        except RateLimitedError as error:
            raise HTTPException(429, str(error), headers={"Retry-After": str(error.retry_after_s)}) from None
        except PauseTooLongError as error:
            raise _invalid("body", "duration_s", str(error)) from None
        except CameraNotFoundError:
            raise HTTPException(404, f"camera {camera_id!r} is not in operation") from None
        except NotHonouredError as error:
            raise HTTPException(409, error.message) from None
        receipt = honoured.receipt
        return ObjectionReceipt(
            receipt=ReceiptCheck(
                receipt_id=receipt.receipt_id,
                camera_id=receipt.camera_id,
                recorded_at=receipt.recorded_at,
                paused_until=receipt.paused_until,
                signature=receipt.signature,
            ),
            paused_until=_iso(receipt.paused_until) or "",
            extended=honoured.extended,
            applied=honoured.applied,
        )

    @app.post(
        "/public/receipts/verify",
        tags=["public"],
        summary="Check an objection's receipt: signed by this registry, and recorded",
    )
    async def verify_receipt(body: ReceiptCheck) -> ReceiptVerdict:
        valid, recorded = await desk.verify(
            Receipt(body.receipt_id, body.camera_id, body.recorded_at, body.paused_until, body.signature)
        )
        return ReceiptVerdict(valid=valid, recorded=recorded)

    return app


def _choose_format(format_: str | None, accept: str | None) -> str:
    if format_ is not None:
        return _CSV if format_ == "csv" else _JSON
    if not accept:
        return _JSON
    media = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for candidate in media:
        if candidate in (_JSON, "application/*", "*/*"):
            return _JSON
        if candidate in (_CSV, "text/*"):
            return _CSV
    raise HTTPException(406, "the Accept header allows neither application/json nor text/csv")
