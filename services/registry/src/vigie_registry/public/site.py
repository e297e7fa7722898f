"""The public transparency page (docs/privacy.md rules 16 and 18), served by the registry at the site's root.

Server-rendered with Jinja2, in French and English (``?lang=fr|en``, else ``Accept-Language``, else
``public.default_language``), with no script, no cookie and no third-party request (a strict
Content-Security-Policy says so to the browser):

- ``GET /``: the cameras in operation, their live state, and a map drawn from their coordinates;
- ``GET /cameras/{id}``: what the camera does, why, on which legal basis, retention, zones analysed (drawn
  over the camera's scene view when it has one), live state, controller and DPO, rights, and the object
  button;
- ``GET /cameras/{id}/view.jpg``: that scene view, a picture of the scene without its people
  (:mod:`vigie_registry.views`: only the answer to the camera's current request), public once made: no
  login and no audit event per read, and, as everywhere on the page, the client's address is neither
  logged nor counted;
- ``POST /cameras/{id}/objection``: the button's form (a signed, short-lived token bound to the camera
  and the client, see :mod:`~vigie_registry.public.form_token`); pauses the camera through the same
  :class:`~vigie_registry.right_to_object.ObjectionDesk` as the JSON API (same rate limit, same maximum
  pause, same audit event) and shows the receipt;
- ``GET|POST /receipts/verify``: checks a receipt;
- ``GET /cameras/{id}/sign.svg`` and ``sign.pdf``: the printable sign with its QR code.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigie_core.audit import AuditUnavailableError, InvalidAuditEventError
from vigie_registry.api.models import ReceiptCheck
from vigie_registry.camera import StoredCamera
from vigie_registry.objections import Receipt, client_address, cross_site
from vigie_registry.public.drawing import MapPoint, SceneDiagram, camera_map, scene_diagram
from vigie_registry.public.form_token import FormTokens
from vigie_registry.public.i18n import LANGUAGES, Catalogue, request_catalogue
from vigie_registry.public.sign import SignLayout, sign_layout, sign_pdf, sign_svg
from vigie_registry.purposes import PURPOSES
from vigie_registry.right_to_object import (
    HonouredObjection,
    NotHonouredError,
    ObjectionDesk,
    RateLimitedError,
)
from vigie_registry.rules import effective_classes, effective_outputs
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import CameraNotFoundError, RegistryStore
from vigie_registry.views import SceneView, ViewsUnavailableError

__all__ = ["SECURITY_HEADERS", "public_site"]

_CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_FORM_BYTES = 4096
_HTML = "text/html; charset=utf-8"
# No script, no third party, no framing; forms post only here.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_JPEG = "image/jpeg"
# The view is public and replaced only on an administrator's request: a minute of caching is plenty.
_VIEW_CACHE = "public, max-age=60"
_CNIL_COMPLAINT = {"fr": "https://www.cnil.fr/fr/plaintes", "en": "https://www.cnil.fr/en/complaints"}


@dataclass(frozen=True, slots=True)
class CameraSummary:
    """A camera as the list and the map show it."""

    number: int
    id: str
    name: str
    address: str
    purpose: str
    state: str
    paused_until: int | None


@dataclass(frozen=True, slots=True)
class ShownView:
    """A camera's accepted scene view as the page shows it."""

    jpeg: bytes
    etag: str
    # When it was made (Unix seconds): when inference built it, else when it was asked for.
    made_at: float
    width: int
    height: int

    @property
    def version(self) -> str:
        return self.etag.strip('"')[:16]


def _shown(view: SceneView) -> ShownView | None:
    answer, jpeg = view.answer, view.jpeg
    if answer is None or jpeg is None:
        return None
    if answer.HasField("built_at"):
        made_at = answer.built_at.ToNanoseconds() / 1e9
    elif view.request is not None:
        made_at = float(view.request.requested_at)
    else:
        return None
    etag = f'"{hashlib.sha256(jpeg).hexdigest()[:32]}"'
    return ShownView(jpeg, etag, made_at, answer.image.width, answer.image.height)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class BadFormError(Exception):
    """A body that is no small urlencoded form."""


async def read_form(
    request: Request, max_bytes: int = _MAX_FORM_BYTES, max_fields: int = 16
) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``max_bytes`` and ``max_fields`` fields (no
    multipart: nothing to upload); :class:`BadFormError` otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadFormError
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BadFormError
    try:
        fields = parse_qsl(body.decode("utf-8"), max_num_fields=max_fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadFormError from None
    return dict(fields)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def add_headers(app: FastAPI, headers: Mapping[str, str]) -> None:
    """Every answer of ``app`` carries ``headers`` (those a route set itself apart)."""

    @app.middleware("http")
    async def set_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response


def public_site(
    *,
    store: RegistryStore,
    desk: ObjectionDesk,
    settings: RegistrySettings,
    form_tokens: FormTokens,
    views: Callable[[StoredCamera], Awaitable[SceneView]] | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The transparency page as a FastAPI application (the service mounts it at ``/``).

    ``views`` reads a camera's scene view as the API does (:meth:`~vigie_registry.views.SceneViews.view`,
    raising :class:`~vigie_registry.views.ViewsUnavailableError`); without it, no view is shown.
    """
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    public = settings.public
    zone = ZoneInfo(public.timezone)
    environment = Environment(
        loader=PackageLoader("vigie_registry.public", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    stylesheet = resources.files("vigie_registry.public").joinpath("static").joinpath("site.css").read_bytes()

    add_headers(app, SECURITY_HEADERS)

    def language_of(request: Request, chosen: str | None = None) -> Catalogue:
        return request_catalogue(request, public.default_language, chosen)

    def client_of(request: Request) -> str:
        return client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            hops=settings.objection.forwarded_hops,
            trusted=settings.objection.trusted_proxies,
        )

    def base_url(request: Request) -> str:
        if public.base_url:
            return public.base_url
        return str(request.base_url).rstrip("/")

    def hosts(request: Request) -> set[str]:
        found = {request.headers.get("host", "")}
        if public.base_url:
            found.add(urlsplit(public.base_url).netloc)
        return {h for h in found if h}

    def render(
        request: Request,
        t: Catalogue,
        template: str,
        *,
        status: int = 200,
        here: str | None = None,
        cache: str = "no-cache",
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        page = here if here is not None else request.url.path

        def url(path: str, **params: str) -> str:
            return f"{path}?{urlencode({'lang': t.language, **params})}"

        def switch_url(code: str) -> str:
            return f"{page}?{urlencode({'lang': code})}"

        html = environment.get_template(template).render(
            t=t,
            url=url,
            switch_url=switch_url,
            languages=LANGUAGES,
            now=clock(),
            when=lambda epoch: t.datetime(epoch, zone),
            at=lambda epoch: t.time(epoch, zone),
            iso=_iso,
            **context,
        )
        response = HTMLResponse(html, status_code=status, media_type=_HTML)
        response.headers["Content-Language"] = t.language
        response.headers["Vary"] = "Accept-Language"
        response.headers["Cache-Control"] = cache
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def error_page(
        request: Request,
        t: Catalogue,
        status: int,
        kind: str,
        message: str,
        *,
        here: str = "/",
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return render(
            request,
            t,
            "error.html",
            status=status,
            here=here,
            headers=headers,
            title=t(f"error.{kind}_title"),
            message=message,
        )

    def in_operation(camera: StoredCamera | None) -> bool:
        return camera is not None and camera.status in ("active", "paused")

    async def operated(camera_id: str) -> StoredCamera | None:
        if not _CAMERA_ID.match(camera_id):
            return None
        camera = await store.camera(camera_id)
        return camera if in_operation(camera) else None

    def summaries(cameras: list[StoredCamera]) -> list[CameraSummary]:
        now = clock()
        return [
            CameraSummary(
                number=number,
                id=c.id,
                name=c.declaration.name,
                address=c.declaration.location.address,
                purpose=c.declaration.purpose,
                state=c.live_state(now),
                paused_until=c.paused_until,
            )
            for number, c in enumerate(cameras, start=1)
        ]

    async def shown_view(camera: StoredCamera) -> ShownView | None:
        """The camera's accepted, ready view; None without one, or while the views cannot be read (the page
        is shown all the same, with its diagram alone)."""
        if views is None:
            return None
        try:
            return _shown(await views(camera))
        except ViewsUnavailableError:
            return None

    def drawn(camera: StoredCamera, view: ShownView | None, t: Catalogue) -> tuple[SceneDiagram, list[str]]:
        """The diagram, and what it shows in words (its text alternative): each line and zone by name, what
        it counts, and the masks."""
        d = camera.declaration
        counted = effective_classes(d, PURPOSES[d.purpose])

        def classes(chosen: list[str]) -> str:
            return t("format.list_separator").join(
                t(f"class.{c}") if t.has(f"class.{c}") else c for c in (chosen or counted)
            )

        diagram = scene_diagram(
            [(line.id, line.start, line.end, line.directions) for line in d.lines],
            [(zone.id, zone.polygon) for zone in d.zones],
            [mask.polygon for mask in d.masks],
            (view.width, view.height) if view is not None else None,
        )
        said = [
            t(
                "camera.drawn_line",
                id=line.id,
                classes=classes(line.classes),
                directions=t(f"direction.{line.directions}"),
            )
            for line in d.lines
        ]
        said += [t("camera.drawn_zone", id=zone.id, classes=classes(zone.classes)) for zone in d.zones]
        if d.masks:
            said.append(t("camera.drawn_masks", count=len(d.masks)))
        return diagram, said

    async def camera_page(
        request: Request, t: Catalogue, camera: StoredCamera, *, status: int = 200, notice: str | None = None
    ) -> HTMLResponse:
        d = camera.declaration
        purpose = PURPOSES[d.purpose]
        state = camera.live_state(clock())
        can_object = d.objection.enabled and camera.status == "active"
        view = await shown_view(camera)
        diagram, drawn_text = drawn(camera, view, t)
        return render(
            request,
            t,
            "camera.html",
            status=status,
            here=f"/cameras/{camera.id}",
            # The form's token is this client's: no shared cache may keep the page.
            cache="no-store",
            camera=camera,
            d=d,
            state=state,
            outputs=effective_outputs(d, purpose),
            classes=t("format.list_separator").join(t(f"class.{c}") for c in effective_classes(d, purpose)),
            can_object=can_object,
            restricted=d.legal.rights_restriction_legal_text if not d.objection.enabled else "",
            token=form_tokens.issue(camera.id, client_of(request)) if can_object else "",
            pause=t.duration(settings.objection.default_pause_s),
            notice=notice,
            complaint_url=_CNIL_COMPLAINT[t.language],
            view=view,
            view_url=f"/cameras/{camera.id}/view.jpg?v={view.version}" if view is not None else "",
            diagram=diagram,
            drawn=drawn_text,
        )

    # -- pages ------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        t = language_of(request)
        operating = [c for c in await store.cameras() if in_operation(c)]
        cameras = summaries(operating)
        cameras_map = camera_map(
            [
                MapPoint(s.number, c.declaration.location.latitude, c.declaration.location.longitude, s.state)
                for s, c in zip(cameras, operating, strict=True)
            ]
        )
        return render(request, t, "index.html", cameras=cameras, map=cameras_map)

    @app.get("/cameras/{camera_id}", response_class=HTMLResponse)
    async def camera(request: Request, camera_id: str) -> HTMLResponse:
        t = language_of(request)
        found = await operated(camera_id)
        if found is None:
            return error_page(request, t, 404, "not_found", t("error.not_found"))
        return await camera_page(request, t, found)

    @app.post("/cameras/{camera_id}/objection", response_class=HTMLResponse)
    async def object_button(request: Request, camera_id: str) -> HTMLResponse:
        try:
            form = await read_form(request)
        except BadFormError:
            form = None
        t = language_of(request, form.get("lang") if form else None)
        here = f"/cameras/{camera_id}" if _CAMERA_ID.match(camera_id) else "/"
        if form is None:
            return error_page(request, t, 400, "bad_request", t("error.bad_request"), here=here)
        if cross_site(request.headers.get("sec-fetch-site"), request.headers.get("origin"), hosts(request)):
            return error_page(request, t, 403, "cross_site", t("error.cross_site"), here=here)
        found = await operated(camera_id)
        if found is None:
            return error_page(request, t, 404, "not_found", t("error.not_found"))
        client = client_of(request)
        try:
            desk.check_rate(client)
        except RateLimitedError as error:
            return error_page(
                request,
                t,
                429,
                "rate_limited",
                t("error.rate_limited", seconds=error.retry_after_s),
                here=here,
                headers={"Retry-After": str(error.retry_after_s)},
            )
        if form_tokens.check(form.get("token", ""), camera_id, client) is not None:
            return await camera_page(request, t, found, status=400, notice=t("notice.expired"))
        try:
            honoured = await desk.object(camera_id)
        except CameraNotFoundError:
            return error_page(request, t, 404, "not_found", t("error.not_found"))
        except NotHonouredError as error:
            message = (
                t("camera.object_restricted", text=error.restricted_by)
                if error.restricted_by
                else t("camera.object_not_active")
            )
            return error_page(request, t, 409, "not_honoured", message, here=here)
        except (AuditUnavailableError, InvalidAuditEventError):
            return error_page(request, t, 503, "unavailable", t("error.unavailable"), here=here)
        return receipt_page(request, t, honoured, here)

    def receipt_page(request: Request, t: Catalogue, honoured: HonouredObjection, here: str) -> HTMLResponse:
        receipt = honoured.receipt
        fields = {
            "receipt_id": receipt.receipt_id,
            "camera_id": receipt.camera_id,
            "recorded_at": receipt.recorded_at,
            "paused_until": receipt.paused_until,
            "signature": receipt.signature,
        }
        return render(
            request,
            t,
            "receipt.html",
            here=here,
            # The receipt is the person's alone: kept by no cache, not even the browser's.
            cache="no-store",
            camera=honoured.camera,
            receipt=receipt,
            fields=fields,
            extended=honoured.extended,
            applied=honoured.applied,
            receipt_json=json.dumps(fields, indent=2),
            api_url=f"{base_url(request)}/v1/public/receipts/verify",
        )

    @app.get("/receipts/verify", response_class=HTMLResponse)
    async def verify_form(request: Request) -> HTMLResponse:
        return render(request, language_of(request), "verify.html", values={}, verdict=None, problem=None)

    @app.post("/receipts/verify", response_class=HTMLResponse)
    async def verify(request: Request) -> HTMLResponse:
        try:
            form = await read_form(request)
        except BadFormError:
            form = {}
        t = language_of(request, form.get("lang"))
        values = {k: form.get(k, "").strip() for k in ReceiptCheck.model_fields}
        try:
            check = ReceiptCheck.model_validate(values)
        except ValidationError as error:
            field = str(error.errors()[0]["loc"][0]) if error.errors() else ""
            problem = t("verify.malformed", field=t(f"verify.{field}") if t.has(f"verify.{field}") else field)
            return render(request, t, "verify.html", status=422, values=values, verdict=None, problem=problem)
        valid, recorded = await desk.verify(
            Receipt(check.receipt_id, check.camera_id, check.recorded_at, check.paused_until, check.signature)
        )
        verdict = "valid_recorded" if valid and recorded else "valid_not_recorded" if valid else "invalid"
        return render(request, t, "verify.html", values=values, verdict=verdict, problem=None)

    # -- the sign ---------------------------------------------------------------------------------------

    async def sign(
        request: Request,
        camera_id: str,
        draw: Callable[[SignLayout], bytes | str],
        suffix: str,
        media_type: str,
    ) -> Response:
        """The camera's sign in the request's language, drawn by ``draw`` (404 page for an unknown camera)."""
        t = language_of(request)
        found = await operated(camera_id)
        if found is None:
            return error_page(request, t, 404, "not_found", t("error.not_found"))
        return Response(
            draw(sign_layout(found, t, f"{base_url(request)}/cameras/{camera_id}")),
            media_type=media_type,
            headers={
                "Content-Disposition": f'inline; filename="sign-{found.id}-{t.language}.{suffix}"',
                "Content-Language": t.language,
                "Vary": "Accept-Language",
            },
        )

    @app.get("/cameras/{camera_id}/sign.svg", response_model=None)
    async def sign_as_svg(request: Request, camera_id: str) -> Response:
        return await sign(request, camera_id, sign_svg, "svg", "image/svg+xml; charset=utf-8")

    @app.get("/cameras/{camera_id}/sign.pdf", response_model=None)
    async def sign_as_pdf(request: Request, camera_id: str) -> Response:
        return await sign(request, camera_id, sign_pdf, "pdf", "application/pdf")

    # -- the scene view ---------------------------------------------------------------------------------

    @app.get("/cameras/{camera_id}/view.jpg", response_model=None)
    async def view_picture(request: Request, camera_id: str) -> Response:
        """The picture the camera's page draws its lines and zones on, for any visitor: not an audited read
        (nothing in it is anyone's data), and nothing of the visitor is logged."""
        t = language_of(request)
        found = await operated(camera_id)
        if found is None:
            return error_page(request, t, 404, "not_found", t("error.not_found"))
        if views is None:
            return error_page(request, t, 404, "no_view", t("error.no_view"), here=f"/cameras/{found.id}")
        try:
            view = _shown(await views(found))
        except ViewsUnavailableError:
            return error_page(
                request, t, 503, "view_unavailable", t("error.view_unavailable"), here=f"/cameras/{found.id}"
            )
        if view is None:
            return error_page(request, t, 404, "no_view", t("error.no_view"), here=f"/cameras/{found.id}")
        headers = {"Cache-Control": _VIEW_CACHE, "ETag": view.etag}
        if _matches(request.headers.get("if-none-match"), view.etag):
            return Response(status_code=304, headers=headers)
        return Response(
            view.jpeg,
            media_type=_JPEG,
            headers={**headers, "Content-Disposition": f'inline; filename="view-{found.id}.jpg"'},
        )

    @app.get("/static/site.css", include_in_schema=False)
    async def css() -> Response:
        return Response(
            stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    # -- errors -----------------------------------------------------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        t = language_of(request)
        if error.status_code == 404:
            return error_page(request, t, 404, "page_not_found", t("error.page_not_found"))
        if error.status_code == 405:
            return error_page(request, t, 405, "method", t("error.method"), headers=dict(error.headers or {}))
        return error_page(request, t, error.status_code, "bad_request", t("error.bad_request"))

    return app
