"""Interactive documentation of an API, served by the API itself with nothing fetched from elsewhere.

FastAPI's own ``/docs`` and ``/redoc`` pages load their scripts, styles and icon from a CDN: on a closed
network (a city's, or a laptop offline) they are blank pages. :func:`install_docs` serves Swagger UI at
``/docs`` with those files taken from the ``fastapi-offline`` wheel (its ``static`` folder: Swagger UI 5,
kept current by its maintainers) and served by the app under ``/docs/assets``. The page references only
paths of the app itself, behind whatever prefix it is mounted at, and its Content-Security-Policy lets
the browser fetch from nowhere else: not even Swagger UI's online validator badge. (No ReDoc: its page
shows its vendor's logo, loaded from a CDN.)

Every Vigie API (statistics, registry, audit) calls it on its FastAPI application, created with
``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "DOCS_CSP", "install_docs"]

# The wheel's files: Swagger UI's bundle and stylesheet, an icon (and ReDoc's bundle, not used).
ASSETS = Path(str(files("fastapi_offline").joinpath("static")))
_FILES = {"swagger_js": "swagger-ui-bundle.js", "swagger_css": "swagger-ui.css", "favicon": "favicon.png"}

# What the page may load: its own app's files, the inline script that starts Swagger UI, the styles and
# images (data: URIs) the bundle inlines. Nothing else.
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)


def install_docs(app: FastAPI, *, docs_url: str = "/docs", assets_url: str | None = None) -> None:
    """Serve Swagger UI at ``docs_url`` of ``app``, with its files from this machine at ``assets_url``
    (``<docs_url>/assets`` by default).

    ``app`` must serve its OpenAPI document (``openapi_url``) and be created with ``docs_url=None`` and
    ``redoc_url=None``: FastAPI's own pages load their files from a CDN.
    """
    if app.openapi_url is None:
        raise ValueError("the app serves no OpenAPI document (openapi_url=None): nothing to document")
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None and redoc_url=None: install_docs serves them")
    missing = [name for name in _FILES.values() if not (ASSETS / name).is_file()]
    if missing:
        raise FileNotFoundError(f"fastapi-offline's {ASSETS} lacks {', '.join(missing)}")
    assets = assets_url or f"{docs_url.rstrip('/')}/assets"
    openapi_url = app.openapi_url
    app.mount(assets, StaticFiles(directory=ASSETS), name="docs-assets")

    def urls(request: Request) -> dict[str, str]:
        root = str(request.scope.get("root_path", "")).rstrip("/")  # the prefix the app is mounted at
        return {"openapi": root + openapi_url} | {
            name: f"{root}{assets}/{file}" for name, file in _FILES.items()
        }

    def page(response: HTMLResponse) -> HTMLResponse:
        response.headers["Content-Security-Policy"] = DOCS_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def swagger_ui(request: Request) -> HTMLResponse:
        found = urls(request)
        return page(
            get_swagger_ui_html(
                openapi_url=found["openapi"],
                title=f"{app.title}: interactive documentation",
                swagger_js_url=found["swagger_js"],
                swagger_css_url=found["swagger_css"],
                swagger_favicon_url=found["favicon"],
                # No OAuth2 flow to complete (the APIs take bearer tokens), and no online validator.
                oauth2_redirect_url=None,
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
