"""The registry's HTTP surface assembled in one place: the API under ``/v1`` and the transparency page at
the root, sharing one :class:`~vigie_registry.right_to_object.ObjectionDesk` (one rate limit for the
JSON endpoint and the page's button)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigie_core.audit import AuditPublisher
from vigie_core.auth import TokenVerifier
from vigie_registry.api.app import CameraOperations, registry_app
from vigie_registry.console.app import console_app
from vigie_registry.console.oidc import OidcClient
from vigie_registry.console.signin import ConsoleSessions, SignInLinks, console_keys
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ClientRateLimiter, ReceiptSigner
from vigie_registry.public.form_token import FormTokens
from vigie_registry.public.site import SECURITY_HEADERS, public_site
from vigie_registry.publication import CameraPublisher
from vigie_registry.right_to_object import ObjectionDesk
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore
from vigie_registry.views import SceneViews, ViewReader

__all__ = ["API_PREFIX", "CONSOLE_PREFIX", "form_tokens_for", "mount_registry"]

API_PREFIX = "/v1"
CONSOLE_PREFIX = "/console"


def form_tokens_for(settings: RegistrySettings, clock: Callable[[], float] = time.time) -> FormTokens:
    """Form tokens every replica accepts: keyed by the receipt key (or, without one, by a key of this run)."""
    secret = (
        settings.receipt_key.get_secret_value().encode()
        if settings.receipt_key is not None
        else secrets.token_bytes(32)
    )
    return FormTokens.derived_from(secret, settings.public.form_token_ttl_s, clock)


def mount_registry(
    root: FastAPI,
    *,
    store: RegistryStore,
    publisher: CameraPublisher,
    audit: AuditPublisher,
    verifier: TokenVerifier,
    settings: RegistrySettings,
    signer: ReceiptSigner,
    metrics: RegistryMetrics,
    clock: Callable[[], float] = time.time,
    form_tokens: FormTokens | None = None,
    views: ViewReader | None = None,
    oidc_transport: httpx.AsyncBaseTransport | None = None,
) -> ObjectionDesk:
    """Mount the API at ``/v1``, the operator console at ``/console`` and the page at ``/`` on ``root``
    (after its own routes: health, metrics); ``views``: where the scene views are read
    (:mod:`vigie_registry.views`); ``oidc_transport``: how the OpenID Connect provider is reached (tests).
    """
    desk = ObjectionDesk(
        store=store,
        publisher=publisher,
        audit=audit,
        signer=signer,
        settings=settings.objection,
        limiter=ClientRateLimiter(settings.objection.rate_limit),
        metrics=metrics,
        clock=clock,
    )
    api = registry_app(
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=verifier,
        settings=settings,
        signer=signer,
        metrics=metrics,
        clock=clock,
        desk=desk,
        views=views,
    )
    root.mount(API_PREFIX, api)
    operations = api.state.operations
    assert isinstance(operations, CameraOperations)
    scene_views = api.state.scene_views
    assert isinstance(scene_views, SceneViews)
    # Sign-in links minted by another process (python -m vigie_registry console-link) verify with a key
    # derived from the receipt key; without one, only this run's key, and no link can be minted outside.
    keys = console_keys(
        settings.receipt_key.get_secret_value().encode()
        if settings.receipt_key is not None
        else secrets.token_bytes(32)
    )

    async def console_home() -> Response:
        return RedirectResponse(f"{CONSOLE_PREFIX}/", status_code=308)

    root.add_api_route(CONSOLE_PREFIX, console_home, methods=["GET"], include_in_schema=False)
    root.mount(
        CONSOLE_PREFIX,
        console_app(
            store=store,
            operations=operations,
            settings=settings,
            links=SignInLinks(keys.link, settings.console.link_ttl_s, clock),
            sessions=ConsoleSessions(keys.session, settings.console.session_ttl_s, clock),
            oidc=(
                OidcClient(settings.console.oidc, keys.session, transport=oidc_transport, clock=clock)
                if settings.console.oidc is not None
                else None
            ),
            clock=clock,
        ),
    )
    site = public_site(
        store=store,
        desk=desk,
        settings=settings,
        form_tokens=form_tokens or form_tokens_for(settings, clock),
        views=scene_views.recent(),
        clock=clock,
    )
    root.mount("/", site)
    site_errors = site.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, error: Exception) -> Response:
        """A path no mount takes (one with a control character, say) is answered like the page's own
        errors, in HTML; the API keeps its JSON errors."""
        assert isinstance(error, StarletteHTTPException)
        if request.url.path.startswith(API_PREFIX + "/"):
            return await http_exception_handler(request, error)
        response = site_errors(request, error)
        if not isinstance(response, Response):
            response = await response
        response.headers.update(SECURITY_HEADERS)
        return response

    root.add_exception_handler(StarletteHTTPException, http_error)
    return desk
