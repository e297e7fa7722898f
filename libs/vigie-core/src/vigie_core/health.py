"""The HTTP endpoints every service serves: Prometheus ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from vigie_core.settings import HttpSettings

logger = logging.getLogger("vigie.health")

# A readiness check returns None when ready, or the reason it is not.
ReadinessCheck = Callable[[], str | None]


class Readiness:
    """Named checks that must all pass before the service takes traffic."""

    def __init__(self) -> None:
        self._started = False
        self._checks: dict[str, ReadinessCheck] = {"startup": lambda: None if self._started else "starting"}

    def mark_started(self) -> None:
        """The service has bound its streams and takes work; the other checks still apply."""
        self._started = True

    def add(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    def failures(self) -> dict[str, str]:
        reasons = {name: check() for name, check in self._checks.items()}
        return {name: reason for name, reason in reasons.items() if reason is not None}


def health_app(registry: CollectorRegistry, readiness: Readiness, app: FastAPI | None = None) -> FastAPI:
    """Add the health and metrics routes to ``app`` (a new one when the service has no API)."""
    app = app or FastAPI(title="Vigie service health", openapi_url=None)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(response: Response) -> dict[str, object]:
        failures = readiness.failures()
        if failures:
            response.status_code = 503
            return {"status": "not ready", "reasons": failures}
        return {"status": "ready"}

    return app


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """How every Vigie HTTP server runs uvicorn: it never learns or writes down who its clients are.

    - No access log: its lines carry each client's address and port, and a citizen's objection would
      leave their address in the registry's log. Requests are counted by the services' own metrics.
    - No proxy headers: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and give the app
      a client address anyone local can forge. A service that needs the client behind a proxy (the
      registry's objection limit) reads the header itself, from the proxies its settings trust.
    - No WebSocket protocol: no service has a WebSocket route, and uvicorn logs each handshake with the
      client's address.
    - Logging left to the service (``log_config=None``); no lifespan: services start and stop themselves.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        ws="none",
    )


class HttpServer:
    """uvicorn in the service's event loop, stopped with the service."""

    def __init__(self, app: FastAPI, settings: HttpSettings) -> None:
        self._server = uvicorn.Server(uvicorn_config(app, settings.host, settings.port))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the reason it could not start (e.g. port in use)
                raise RuntimeError("HTTP server stopped before it started")
            await asyncio.sleep(0.01)
        logger.info("serving /metrics, /healthz and /readyz on %s", self.url)

    @property
    def url(self) -> str:
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
