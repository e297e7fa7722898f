"""Start-up and clean shutdown shared by every service.

``run_service`` configures logging, builds the runtime (metrics registry, readiness, tracer, HTTP
server), runs the service's body, and turns SIGTERM/SIGINT into a stop request the body honours by
draining: it finishes the work in hand, acknowledges it, and returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from vigie_core.health import HttpServer, Readiness, health_app
from vigie_core.settings import ServiceSettings
from vigie_core.telemetry import tracer_provider


@dataclass
class ServiceRuntime:
    """What a service's body receives: its settings and the shared plumbing, no globals."""

    name: str
    settings: ServiceSettings
    registry: CollectorRegistry
    readiness: Readiness
    tracer_provider: TracerProvider
    stop_requested: asyncio.Event
    exit_stack: AsyncExitStack
    http_url: str = ""
    app: FastAPI = field(default_factory=lambda: FastAPI(openapi_url=None))

    @property
    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer(f"vigie.{self.name}")


ServiceBody = Callable[[ServiceRuntime], Coroutine[Any, Any, None]]


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


@contextlib.asynccontextmanager
async def service_runtime(
    name: str,
    settings: ServiceSettings,
    span_exporter: SpanExporter | None = None,
    app: FastAPI | None = None,
) -> AsyncIterator[ServiceRuntime]:
    """The runtime as an async context manager: tests run services in-process with it."""
    async with AsyncExitStack() as stack:
        provider = tracer_provider(name, settings.telemetry, span_exporter)
        stack.callback(provider.shutdown)
        runtime = ServiceRuntime(
            name=name,
            settings=settings,
            registry=CollectorRegistry(),
            readiness=Readiness(),
            tracer_provider=provider,
            stop_requested=asyncio.Event(),
            exit_stack=stack,
        )
        if app is not None:
            runtime.app = app
        server = HttpServer(health_app(runtime.registry, runtime.readiness, runtime.app), settings.http)
        await server.start()
        stack.push_async_callback(server.stop)
        runtime.http_url = server.url
        yield runtime


async def _main(name: str, settings: ServiceSettings, body: ServiceBody) -> None:
    loop = asyncio.get_running_loop()
    async with service_runtime(name, settings) as runtime:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runtime.stop_requested.set)
        await body(runtime)
    logging.getLogger(f"vigie.{name}").info("stopped")


def service_main(name: str, settings_type: type[ServiceSettings], body: ServiceBody) -> None:
    """The ``python -m vigie_<name> [--config FILE]`` entry point of every service."""
    parser = argparse.ArgumentParser(prog=f"vigie-{name}", description=f"Run the Vigie {name} service.")
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    args = parser.parse_args()
    try:
        settings = settings_type.load(args.config)
    except (ValueError, OSError) as error:  # pydantic's ValidationError is a ValueError
        print(f"vigie-{name}: invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    run_service(name, settings, body)


def run_service(name: str, settings: ServiceSettings, body: ServiceBody) -> None:
    """Run a service until it finishes or is asked to stop (SIGTERM, SIGINT)."""
    configure_logging(settings.log_level)
    asyncio.run(_main(name, settings, body))
