"""The operator console's routes (mounted at ``/console``): server-rendered pages in French and English, one
stylesheet and one small script of the registry's own, a strict Content-Security-Policy.

- ``GET /sign-in?token=``: a one-time link (:mod:`~vigie_registry.console.signin`) opens a session (an
  HttpOnly, SameSite=Strict cookie, Secure over https) and leads to the cameras; ``POST /sign-out`` ends it.
- ``GET /``: the cameras and their state; ``GET /cameras/{id}``: one camera, its scene view with its lines,
  zones and masks drawn over it, and the forms that ask for a view and change the lines and zones.
- ``POST /cameras/{id}/view-requests``, ``GET /cameras/{id}/view.jpg?motive=``, ``POST
  /cameras/{id}/geometry``: through the API's own code paths
  (:class:`~vigie_registry.api.app.CameraOperations`), with the signed-in operator as the actor and the
  motive typed in the form.

Every POST carries the session's form token and is refused when the browser says it comes from another site.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigie_core.auth import Principal
from vigie_registry.api.app import CameraOperations
from vigie_registry.camera import StoredCamera
from vigie_registry.console.geometry_form import (
    DIRECTIONS,
    FieldError,
    GeometryForm,
    ShapeRow,
    read_geometry_form,
    rows_of,
)
from vigie_registry.console.oidc import FLOW_TTL_S, OidcClient, OidcError
from vigie_registry.console.signin import (
    ConsoleSession,
    ConsoleSessions,
    SignInLinks,
    SignInRefusedError,
)
from vigie_registry.declaration import CameraDeclaration, LineDeclaration, ZoneDeclaration
from vigie_registry.objections import cross_site
from vigie_registry.public.drawing import frame_points
from vigie_registry.public.i18n import LANGUAGES, Catalogue, request_catalogue
from vigie_registry.public.site import BadFormError, add_headers, read_form
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore
from vigie_registry.views import SceneView

__all__ = ["CONSOLE_HEADERS", "COOKIE", "FLOW_COOKIE", "console_app"]

COOKIE = "vigie_console"
# The OpenID Connect flow's state, nonce and PKCE verifier, between the start and the provider's callback.
FLOW_COOKIE = "vigie_console_oidc"
_HTML = "text/html; charset=utf-8"
_MAX_FORM_BYTES = 64 * 1024
_CAMERA_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# The drawing's frame: 1000 wide, as high as the view's proportions say (16:9 without a view).
FRAME_WIDTH = 1000
CONSOLE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
_CATALOGUE = "vigie_registry.console"


class _SignedOutError(Exception):
    pass


def console_state(camera: StoredCamera, now: float) -> str:
    """What the list says of a camera: its status, or that an objection pauses it now."""
    if camera.status == "active" and camera.live_state(now) == "paused_by_objection":
        return "paused_by_objection"
    return camera.status


def console_app(
    *,
    store: RegistryStore,
    operations: CameraOperations,
    settings: RegistrySettings,
    links: SignInLinks,
    sessions: ConsoleSessions,
    oidc: OidcClient | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The console as a FastAPI application (mounted at ``/console``); ``oidc``: sign-in through the city's
    OpenID Connect provider, besides one-time links."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    zone = ZoneInfo(settings.public.timezone)
    environment = Environment(
        loader=PackageLoader("vigie_registry.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["frame_points"] = frame_points
    static = resources.files("vigie_registry.console").joinpath("static")
    assets = {
        "console.css": (static.joinpath("console.css").read_bytes(), "text/css; charset=utf-8"),
        "console.js": (static.joinpath("console.js").read_bytes(), "text/javascript; charset=utf-8"),
    }

    add_headers(app, CONSOLE_HEADERS)

    def language_of(request: Request, chosen: str | None = None) -> Catalogue:
        return request_catalogue(request, settings.public.default_language, chosen, _CATALOGUE)

    def prefix(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    def render(
        request: Request,
        t: Catalogue,
        template: str,
        *,
        status: int = 200,
        session: ConsoleSession | None = None,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        root = prefix(request)
        page = f"{root}{request.url.path.removeprefix(root)}" if request.method == "GET" else None

        def url(path: str, **params: str) -> str:
            return f"{root}{path}?{urlencode({'lang': t.language, **params})}"

        def switch_url(code: str) -> str:
            params = {k: v for k, v in request.query_params.items() if k in ("saved", "asked")}
            return f"{page or root + '/'}?{urlencode({'lang': code, **params})}"

        html = environment.get_template(template).render(
            t=t,
            url=url,
            static=lambda name: f"{root}/static/{name}",
            switch_url=switch_url,
            languages=LANGUAGES,
            session=session,
            form_token=sessions.form_token(session) if session else "",
            when=lambda epoch: _when(t, epoch, zone),
            **{"oidc_enabled": oidc is not None, "detail": "", **context},
        )
        response = HTMLResponse(html, status_code=status, media_type=_HTML)
        response.headers["Content-Language"] = t.language
        response.headers["Vary"] = "Accept-Language, Cookie"
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def session_of(request: Request) -> ConsoleSession:
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None or settings.admin_scope not in session.scopes:
            raise _SignedOutError
        return session

    def principal_of(session: ConsoleSession) -> Principal:
        return Principal(
            subject=session.operator,
            scopes=session.scopes,
            issuer="vigie-console",
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
            token_id=None,
        )

    async def posted(request: Request, session: ConsoleSession) -> dict[str, str]:
        """The form's fields, once its token and origin are checked; else 403."""
        hosts = {request.headers.get("host", "")}
        if settings.public.base_url:
            hosts.add(urlsplit(settings.public.base_url).netloc)
        if cross_site(request.headers.get("sec-fetch-site"), request.headers.get("origin"), hosts):
            raise HTTPException(403, "cross_site")
        fields = await read_form(request, _MAX_FORM_BYTES, max_fields=400)
        if not sessions.form_token_valid(session, fields.get("form_token")):
            raise HTTPException(403, "form_token")
        return fields

    async def known(camera_id: str) -> StoredCamera:
        camera = await store.camera(camera_id) if set(camera_id) <= _CAMERA_ID_CHARS else None
        if camera is None or len(camera_id) > 64:
            raise HTTPException(404, "camera")
        return camera

    # -- signing in and out -----------------------------------------------------------------------------

    def set_session_cookie(request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=sessions.ttl_s,
            path=prefix(request) or "/",
            secure=_https(request, settings),
            httponly=True,
            samesite="strict",
        )

    @app.get("/sign-in", response_class=HTMLResponse)
    async def sign_in(request: Request, token: str | None = None) -> Response:
        t = language_of(request)
        if token is None:
            return render(request, t, "sign_in.html", status=401, problem=None)
        try:
            operator = links.redeem(token)
        except SignInRefusedError as refused:
            return render(request, t, "sign_in.html", status=400, problem=refused.problem.value)
        _session, value = sessions.open(operator, [settings.admin_scope])
        response = RedirectResponse(f"{prefix(request)}/?{urlencode({'lang': t.language})}", status_code=303)
        set_session_cookie(request, response, value)
        return response

    def callback_url(request: Request) -> str:
        base = settings.public.base_url or f"{request.url.scheme}://{request.url.netloc}"
        return f"{base}{prefix(request)}/oidc/callback"

    def sign_in_problem(
        request: Request, t: Catalogue, status: int, problem: str, detail: str = ""
    ) -> Response:
        response = render(request, t, "sign_in.html", status=status, problem=problem, detail=detail)
        response.delete_cookie(FLOW_COOKIE, path=f"{prefix(request)}/oidc", httponly=True, samesite="lax")
        return response

    @app.get("/oidc/start", response_class=HTMLResponse)
    async def oidc_start(request: Request) -> Response:
        if oidc is None:
            raise HTTPException(404, "oidc")
        t = language_of(request)
        flow = oidc.new_flow()
        try:
            target = await oidc.authorization_url(flow, callback_url(request))
        except OidcError as error:
            return sign_in_problem(request, t, 503, "oidc_failed", str(error))
        response = RedirectResponse(target, status_code=303)
        # Lax, not Strict: the provider's redirect back is a navigation from its site.
        response.set_cookie(
            FLOW_COOKIE,
            oidc.seal(flow),
            max_age=FLOW_TTL_S,
            path=f"{prefix(request)}/oidc",
            secure=_https(request, settings),
            httponly=True,
            samesite="lax",
        )
        return response

    @app.get("/oidc/callback", response_class=HTMLResponse)
    async def oidc_callback(
        request: Request, code: str | None = None, state: str | None = None, error: str | None = None
    ) -> Response:
        if oidc is None:
            raise HTTPException(404, "oidc")
        t = language_of(request)
        flow = oidc.unseal(request.cookies.get(FLOW_COOKIE))
        if flow is None or state is None or not hmac.compare_digest(state, flow.state):
            return sign_in_problem(request, t, 400, "oidc_state")
        if error is not None or not code:
            return sign_in_problem(request, t, 400, "oidc_refused", (error or "")[:100])
        try:
            signed = await oidc.finish(flow, code, callback_url(request))
        except OidcError as failure:
            return sign_in_problem(request, t, 502, "oidc_failed", str(failure))
        if not signed.admin:
            role = f"{oidc.settings.admin_claim}: {oidc.settings.admin_value}"
            return sign_in_problem(request, t, 403, "oidc_not_admin", role)
        _session, value = sessions.open(signed.operator, [settings.admin_scope])
        # A page that moves on by itself, not a redirect: the session's SameSite=Strict cookie is sent only on
        # a navigation this site starts, and this one was started by the provider's.
        response = render(request, t, "signed_in.html", home=f"{prefix(request)}/?lang={t.language}")
        set_session_cookie(request, response, value)
        response.delete_cookie(FLOW_COOKIE, path=f"{prefix(request)}/oidc", httponly=True, samesite="lax")
        return response

    @app.post("/sign-out", response_class=HTMLResponse)
    async def sign_out(request: Request) -> Response:
        t = language_of(request)
        session = session_of(request)
        await posted(request, session)
        sessions.end(session)
        response = render(request, t, "signed_out.html")
        response.delete_cookie(COOKIE, path=prefix(request) or "/", httponly=True, samesite="strict")
        return response

    # -- pages ------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def cameras(request: Request) -> Response:
        t = language_of(request)
        session = session_of(request)
        now = clock()
        found = await store.cameras()
        rows = [(c, console_state(c, now)) for c in found]
        return render(request, t, "cameras.html", session=session, cameras=rows)

    async def camera_page(
        request: Request,
        t: Catalogue,
        session: ConsoleSession,
        camera: StoredCamera,
        *,
        status: int = 200,
        form: GeometryForm | None = None,
        view_errors: Mapping[str, FieldError] | None = None,
        save_errors: list[str] | None = None,
        fields: Mapping[str, str] | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        d = camera.declaration
        try:
            view: SceneView | None = await operations.view(camera)
            view_problem = None
        except HTTPException:
            view, view_problem = None, "unavailable"
        width, height = 16, 9
        if view is not None and view.state == "ready" and view.answer is not None:
            width, height = view.answer.image.width or 16, view.answer.image.height or 9
        frame_height = round(FRAME_WIDTH * height / width)
        show_motive = request.query_params.get("motive", "").strip()[:1000] if request.method == "GET" else ""
        return render(
            request,
            t,
            "camera.html",
            status=status,
            session=session,
            camera=camera,
            d=d,
            state=console_state(camera, clock()),
            view=view,
            view_problem=view_problem,
            show_motive=show_motive,
            frame=(FRAME_WIDTH, frame_height),
            form=form or rows_of(d.lines, d.zones),
            directions=DIRECTIONS,
            view_errors=view_errors or {},
            save_errors=save_errors or [],
            fields=fields or {},
            notice=notice,
            saved=request.query_params.get("saved", ""),
            asked=request.query_params.get("asked", ""),
            sample_default=settings.views.default_sample_seconds,
        )

    @app.get("/cameras/{camera_id}", response_class=HTMLResponse)
    async def camera(request: Request, camera_id: str) -> Response:
        t = language_of(request)
        session = session_of(request)
        return await camera_page(request, t, session, await known(camera_id))

    @app.get("/cameras/{camera_id}/view.jpg", response_model=None)
    async def view_picture(request: Request, camera_id: str, motive: str = "") -> Response:
        session = session_of(request)
        camera = await known(camera_id)
        motive = motive.strip()
        if not motive:
            raise HTTPException(422, "motive")
        jpeg = await operations.view_picture(camera.id, principal_of(session), motive)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/cameras/{camera_id}/view-requests", response_class=HTMLResponse)
    async def request_view(request: Request, camera_id: str) -> Response:
        session = session_of(request)
        fields = await posted(request, session)
        t = language_of(request, fields.get("lang"))
        camera = await known(camera_id)
        motive = fields.get("motive", "").strip()
        errors: dict[str, FieldError] = {}
        if not motive:
            errors["motive"] = FieldError("motive_missing")
        elif len(motive) > 1000:
            errors["motive"] = FieldError("motive_long")
        sample_text = fields.get("sample_seconds", "").strip()
        sample: int | None = None
        if sample_text:
            low, high = 10, 600
            if not sample_text.isdigit() or not low <= int(sample_text) <= high:
                errors["sample_seconds"] = FieldError("sample_range", {"low": low, "high": high})
            else:
                sample = int(sample_text)
        if errors:
            return await camera_page(
                request, t, session, camera, status=422, view_errors=errors, fields=fields
            )
        try:
            await operations.request_view(camera.id, principal_of(session), motive, sample)
        except HTTPException as error:
            if error.status_code in (409, 429):
                key = "view_not_active" if error.status_code == 409 else "view_too_soon"
                retry = (error.headers or {}).get("Retry-After", "")
                errors["motive"] = FieldError(key, {"seconds": retry})
                return await camera_page(
                    request, t, session, camera, status=error.status_code, view_errors=errors, fields=fields
                )
            raise
        return RedirectResponse(
            f"{prefix(request)}/cameras/{camera.id}?{urlencode({'lang': t.language, 'asked': '1'})}",
            status_code=303,
        )

    @app.post("/cameras/{camera_id}/geometry", response_class=HTMLResponse)
    async def save_geometry(request: Request, camera_id: str) -> Response:
        session = session_of(request)
        fields = await posted(request, session)
        t = language_of(request, fields.get("lang"))
        camera = await known(camera_id)
        form = read_geometry_form(fields)
        motive = fields.get("motive", "").strip()
        motive_error = None
        if not motive:
            motive_error = t("field.motive_missing")
        elif len(motive) > 1000:
            motive_error = t("field.motive_long")
        if not form.valid or motive_error:
            return await camera_page(
                request,
                t,
                session,
                camera,
                status=422,
                form=form,
                save_errors=[motive_error] if motive_error else [],
                fields=fields,
            )
        lines, zones, kept_lines, kept_zones = form.declarations()
        try:
            _with_geometry(camera.declaration, lines, zones)
        except ValidationError as error:
            messages = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
            return await camera_page(
                request, t, session, camera, status=422, form=form, save_errors=messages, fields=fields
            )

        def modify(old: StoredCamera) -> StoredCamera:
            # The stored declaration (it may have changed since the page), with the form's lines and zones.
            return replace(old, declaration=_with_geometry(old.declaration, lines, zones))

        try:
            saved = await operations.change(camera.id, principal_of(session), motive, "update", modify)
        except HTTPException as error:
            if error.status_code not in (409, 422):
                raise
            messages = _attach(error.detail, kept_lines, kept_zones)
            return await camera_page(
                request,
                t,
                session,
                camera,
                status=error.status_code,
                form=form,
                save_errors=messages,
                fields=fields,
            )
        query = urlencode({"lang": t.language, "saved": saved.version})
        return RedirectResponse(
            f"{prefix(request)}/cameras/{camera.id}?{query}",
            status_code=303,
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "asset")
        body, media = assets[name]
        return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

    # -- errors -----------------------------------------------------------------------------------------

    @app.exception_handler(_SignedOutError)
    async def signed_out(request: Request, _error: Exception) -> Response:
        t = language_of(request)
        if request.method == "GET":
            return RedirectResponse(
                f"{prefix(request)}/sign-in?{urlencode({'lang': t.language})}", status_code=303
            )
        return render(request, t, "sign_in.html", status=401, problem="signed_out")

    @app.exception_handler(BadFormError)
    async def bad_form(request: Request, _error: Exception) -> Response:
        t = language_of(request)
        return render(request, t, "error.html", status=400, kind="bad_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        t = language_of(request)
        session = sessions.read(request.cookies.get(COOKIE))
        kinds = {403: "forbidden", 404: "not_found", 405: "method", 503: "unavailable"}
        kind = kinds.get(error.status_code, "bad_request")
        detail = error.detail if isinstance(error.detail, str) and error.status_code == 503 else ""
        return render(
            request, t, "error.html", status=error.status_code, session=session, kind=kind, detail=detail
        )

    return app


def _with_geometry(
    declaration: CameraDeclaration, lines: list[LineDeclaration], zones: list[ZoneDeclaration]
) -> CameraDeclaration:
    return CameraDeclaration.model_validate(
        {
            **declaration.model_dump(mode="json"),
            "lines": [x.model_dump(mode="json") for x in lines],
            "zones": [x.model_dump(mode="json") for x in zones],
        }
    )


def _when(t: Catalogue, epoch: float, zone: ZoneInfo) -> str:
    return t.datetime(epoch, zone) if t.has("format.datetime") else str(int(epoch))


def _https(request: Request, settings: RegistrySettings) -> bool:
    """Whether the browser reached the registry over https: directly, or through the public address (TLS
    ending at the ingress) — not when the same registry is opened on its machine over plain http."""
    if request.url.scheme == "https":
        return True
    base = settings.public.base_url
    return base is not None and base.startswith("https://") and urlsplit(base).netloc == request.url.netloc


def _attach(detail: object, lines: list[ShapeRow], zones: list[ShapeRow]) -> list[str]:
    """The API's refusal: each item next to the row it names (``loc`` body.lines.N...), the rest returned."""
    if not isinstance(detail, list):
        return [str(detail)]
    rest = []
    for item in detail:
        if not isinstance(item, dict):
            rest.append(str(item))
            continue
        loc = [p for p in item.get("loc", []) if p != "body"]
        message = str(item.get("msg", ""))
        if len(loc) >= 2 and loc[0] in ("lines", "zones") and isinstance(loc[1], int):
            rows = lines if loc[0] == "lines" else zones
            if loc[1] < len(rows):
                rows[loc[1]].errors["points"] = FieldError("refused", {"message": message})
                continue
        rest.append(message)
    return rest
