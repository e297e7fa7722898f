"""pytest fixtures for tests that need real components (registered by the repository's conftest.py).

Every nats-server they start is provisioned (:mod:`vigie_core.provision`) before the test runs: the
streams and buckets exist, as the chart's provisioning Job makes them, since no service may create one.
A test sizes them with ``@pytest.mark.provision(frames_max_age_s=60, ...)`` (the fields of
:class:`~vigie_core.provision.ProvisionSettings`), or gets a server without any stream with
``@pytest.mark.provision(False)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import shlex
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Self, TypeVar

import pytest
import uvicorn
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from vigie_core.health import uvicorn_config
from vigie_core.lifecycle import ServiceBody, ServiceRuntime, service_runtime
from vigie_core.messaging import DurablePull
from vigie_core.permissions import LOCAL_API, api_prefix
from vigie_core.provision import ProvisionSettings
from vigie_core.settings import ServiceSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.triton import EmbeddedTriton

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "provision(False | **sizes): how the fixtures' nats-servers are provisioned "
        "(vigie_core.provision.ProvisionSettings fields; False: no stream at all)",
    )


def _provisioning(request: pytest.FixtureRequest) -> ProvisionSettings | bool:
    marker = request.node.get_closest_marker("provision")
    if marker is None:
        return True
    if marker.args and marker.args[0] is False:
        return False
    return ProvisionSettings(**marker.kwargs)


@pytest.fixture
def nats_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedNats]:
    """A private nats-server with JetStream on a free port, for one test, with every stream and bucket
    provisioned (``@pytest.mark.provision``)."""
    with EmbeddedNats(provision=_provisioning(request)) as server:
        yield server


@pytest.fixture
def audit_stream(nats_server: EmbeddedNats) -> EmbeddedNats:
    """``nats_server``, whose AUDIT stream services record their audit events to (it is provisioned with the
    others: kept for the tests that name it)."""
    return nats_server


@pytest.fixture
def secured_nats_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedNats]:
    """A private nats-server as the platform runs it: Vigie's accounts, one user per service with its
    permissions and no anonymous access (``.credentials(service)``, ``.service_env(service)``), provisioned
    by a ``provisioner`` whose user existed only meanwhile. No user may do everything: a test observes a
    stream as the service that reads it."""
    with EmbeddedNats(secured=True, provision=_provisioning(request)) as server:
        yield server


class ServiceConnections:
    """Connections to a secured server as each service, opened on demand and closed together: a test acts
    (publishes, reads, writes the policy) as the service that would, in that service's account. There is
    no user allowed everything."""

    def __init__(self, server: EmbeddedNats) -> None:
        self._server = server
        self._clients: dict[str, Client] = {}

    async def client(self, service: str) -> Client:
        if service not in self._clients:
            self._clients[service] = await self._server.client(service)
        return self._clients[service]

    async def js(self, service: str, stream: str | None = None, timeout_s: float = 5.0) -> JetStreamContext:
        """``service``'s JetStream context, reaching ``stream`` (in its account or imported) if named."""
        prefix = LOCAL_API if stream is None else api_prefix(service, stream, accounts=self._server.secured)
        return (await self.client(service)).jetstream(prefix=prefix, timeout=timeout_s)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


@contextlib.asynccontextmanager
async def following(
    js: JetStreamContext, stream: str, subject: str, decode: Callable[[bytes], T]
) -> AsyncIterator[list[T]]:
    """Every message stored in ``stream`` on ``subject`` from now on, as its reader would fetch them (a
    durable pull consumer of its own, each message acknowledged, bound again after a broker restart),
    decoded and appended to the yielded list."""
    stop = asyncio.Event()
    pull = DurablePull(
        js,
        stream=stream,
        subject=subject,
        config=ConsumerConfig(durable_name=f"test-{uuid.uuid4().hex[:12]}", ack_policy=AckPolicy.EXPLICIT),
        stop=stop,
        retry_initial_s=0.05,
        retry_max_s=0.5,
    )
    received: list[T] = []

    async def pump() -> None:
        while not stop.is_set():
            for message in await pull.fetch(64, timeout_s=0.2):
                received.append(decode(message.data))
                await message.ack()

    task = asyncio.create_task(pump(), name=f"following-{stream}")
    try:
        yield received
    finally:
        stop.set()
        await task
        await pull.close()


@pytest.fixture
async def as_service(secured_nats_server: EmbeddedNats) -> AsyncIterator[ServiceConnections]:
    """Connections to ``secured_nats_server`` as each service (:class:`ServiceConnections`)."""
    connections = ServiceConnections(secured_nats_server)
    try:
        yield connections
    finally:
        await connections.close()


@contextlib.asynccontextmanager
async def running_service(
    name: str, settings: ServiceSettings, body: ServiceBody
) -> AsyncIterator[ServiceRuntime]:
    """Run a service's body in this event loop, as its process would; stop and drain it on exit."""
    async with service_runtime(name, settings) as runtime:
        task = asyncio.create_task(body(runtime), name=f"service-{name}")
        # A body that ends by itself (a crash) stops the service, as its process would exit.
        task.add_done_callback(lambda _: runtime.stop_requested.set())
        try:
            yield runtime
        finally:
            runtime.stop_requested.set()
            await asyncio.wait_for(task, 30)


def fuzz_settings(examples: int = 30, *, shrink: bool = False) -> Any:
    """The Hypothesis settings of the API fuzz tests: ``examples`` per operation (times
    ``VIGIE_FUZZ_EXAMPLES / 30`` when that is set, to go deeper by hand), derandomised (the same examples
    every run, so that CI is not a lottery); ``shrink``: a failure is reduced to its simplest form."""
    from hypothesis import HealthCheck, Phase, settings

    scale = int(os.environ.get("VIGIE_FUZZ_EXAMPLES", "30")) / 30
    return settings(
        max_examples=max(1, round(examples * scale)),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=list(Phase) if shrink else [Phase.explicit, Phase.generate],
        database=None,
        derandomize=True,
    )


def repository_root() -> Path:
    return Path(__file__).resolve().parents[4]


def load_bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``bench/<name>.py`` as a module, for its tests: registered in ``sys.modules`` while the test runs (its
    dataclasses look their module up there), ``sys.path`` restored after (a benchmark may put the
    repository's root first)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", repository_root() / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The python-backend model repository ``make models`` builds (``make test`` builds it first)."""
    path = repository_root() / "var" / "model_repository" / "python"
    if not (path / "yolov4_tiny" / "config.pbtxt").is_file():
        pytest.fail(f"{path} has no yolov4_tiny model: run 'make models'")
    return path


@pytest.fixture(scope="session")
def sample_video() -> Path:
    path = repository_root() / "var" / "videos" / "sample.mp4"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run 'make videos'")
    return path


@pytest.fixture(scope="session")
def triton_server(model_repository: Path) -> Iterator[EmbeddedTriton]:
    """One embedded tritonserver for the session: loading the models takes seconds."""
    with EmbeddedTriton(model_repository) as server:
        yield server


# -- logs ----------------------------------------------------------------------------------------------


@pytest.fixture
def every_log_record(monkeypatch: pytest.MonkeyPatch) -> list[logging.LogRecord]:
    """Every record any logger makes at DEBUG and above (the most a service's ``log_level`` allows),
    whatever the loggers' own levels, handlers and propagation (uvicorn's access logger does not
    propagate when switched off, for one), from every thread; none reaches a handler."""
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Logger, "isEnabledFor", lambda self, level: level >= logging.DEBUG)
    monkeypatch.setattr(logging.Logger, "handle", lambda self, record: records.append(record))
    return records


def log_record_text(record: logging.LogRecord) -> str:
    """All a log record holds: its message, arguments, extra fields and exception."""
    exception = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
    return f"{record.getMessage()} {record.__dict__!r} {exception}"


# -- metrics that would count people ---------------------------------------------------------------------

# Words of a metric or label name that say it counts the objects a camera sees (people, vehicles), as
# underscore-separated parts: vigie_inference_live_tracks, ..._detections_discarded, object_class.
COUNTED_OBJECTS = re.compile(
    r"(?:^|_)(?:tracks?|tracked|detections?|detected|crossings?|occupancy|dwell|stays?|objects?|people|"
    r"persons?|pedestrians?|vehicles?|headcount|class|classes)(?:_|$)"
)
# Label names that would hold who a client is or where a camera is read from.
CLIENT_OR_SOURCE = re.compile(
    r"(?:^|_)(?:client|address|addr|ip|peer|remote|forwarded|user|url|uri|source|host)(?:_|$)"
)
# The figures the statistics API publishes for each site's latest released window: disclosure-controlled
# (small counts suppressed, with their complements) exactly as the API serves them, so they may count.
PUBLISHED_FIGURES_PREFIX = "vigie_published_"
# Names that match COUNTED_OBJECTS but count something else, each with why.
NOT_COUNTING_OBJECTS = {
    "vigie_inference_capture_to_tracks_seconds": "a latency per frame: its _count counts frames",
}


def metric_privacy_problem(name: str, labels: Iterable[str] = ()) -> str | None:
    """Why a metric (its base name, without _total/_bucket/...) and its label names may not be exposed,
    or None: no metric may count the objects a camera sees at scrape resolution, per class or not (only
    the published figures do), and no label may carry a client or a camera's source."""
    for label in labels:
        if CLIENT_OR_SOURCE.search(label):
            return f"{name}: label {label!r} would carry a client address or a camera source"
    if name.startswith(PUBLISHED_FIGURES_PREFIX) or name in NOT_COUNTING_OBJECTS:
        return None
    for part in (name, *labels):
        if COUNTED_OBJECTS.search(part):
            return f"{name}: {part!r} counts objects a camera sees, finer than any published window"
    return None


def metric_privacy_problems(exposition: str) -> list[str]:
    """:func:`metric_privacy_problem` for every family of a /metrics page (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    problems = []
    for family in text_string_to_metric_families(exposition):
        labels = sorted({label for sample in family.samples for label in sample.labels} - {"le", "quantile"})
        # prometheus_client shows when a metric was created as a gauge family of its own.
        problem = metric_privacy_problem(re.sub(r"_(created|total)$", "", family.name), labels)
        if problem is not None:
            problems.append(problem)
    return problems


# -- PostgreSQL --------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("VIGIE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True, slots=True)
class PostgresSchema:
    url: str
    schema: str


@contextlib.asynccontextmanager
async def postgres_schema(prefix: str) -> AsyncIterator[PostgresSchema]:
    """A fresh schema ``<prefix>_<random>`` on the test PostgreSQL (``VIGIE_TEST_POSTGRES_URL``), dropped
    afterwards. On CI (``CI=true``) an unreachable database fails the test; elsewhere it is skipped with
    the reason."""
    import asyncpg  # the driver the services use with PostgreSQL

    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        reason = f"PostgreSQL at {dsn} is unreachable ({error}); set VIGIE_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the database must be there)")
        pytest.skip(reason)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield PostgresSchema(POSTGRES_URL, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


# -- an HTTP app for synchronous clients ---------------------------------------------------------------

AppFactory = Callable[[contextlib.AsyncExitStack], Awaitable[Any]]


class ThreadedServer:
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, in a thread with its own event loop, for
    synchronous clients (schemathesis, a browser). ``build(stack)`` makes the app in that loop and puts
    what must be closed afterwards (stores, publishers) on ``stack``."""

    def __init__(self, build: AppFactory) -> None:
        self.base_url = ""
        self._build = build
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            app = await self._build(stack)
            # The services' own uvicorn settings: no access log, no proxy headers.
            self._server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0))
            task = asyncio.create_task(self._server.serve())
            while not self._server.started:
                if task.done():
                    await task  # it failed to start: raise why
                await asyncio.sleep(0.01)
            host, port = self._server.servers[0].sockets[0].getsockname()[:2]
            self.base_url = f"http://{host}:{port}"
            self._ready.set()
            await task

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


# -- interactive API documentation that loads nothing from elsewhere ------------------------------------

# What a documentation page loads: scripts, styles, icons, and the OpenAPI document Swagger UI reads
# (``url: '...'`` in its start script).
_DOCS_REFERENCES = re.compile(r"""(?:\b(?:src|href)=["']|\burl: ?')([^"']*)["']""")
_ABSOLUTE_URL = re.compile(r"""[a-z][a-z0-9+.-]*://[^\s"'<>]*|["'(]//[^\s"'<>]+""")


async def offline_docs_problems(client: Any, api: str) -> list[str]:
    """What keeps the interactive documentation of the API at ``api`` (its ``/docs``,
    :func:`vigie_core.api_docs.install_docs`) from working with no request leaving the machine: a page
    that is not HTML, a reference to another origin, a file it loads that does not answer 200, an OpenAPI
    document that is not one. ``client`` is an ``httpx.AsyncClient`` (on a live server or an ASGI app);
    ``api`` is a URL or a path of it, without the trailing slash."""
    origin = re.match(r"^[a-z]+://[^/]+", api)
    base = origin.group(0) if origin else ""
    docs = f"{api}/docs"
    response = await client.get(docs)
    if response.status_code != 200 or not response.headers["content-type"].startswith("text/html"):
        return [f"{docs}: {response.status_code} {response.headers.get('content-type')}"]
    problems = [f"{docs} names another origin: {url}" for url in _ABSOLUTE_URL.findall(response.text)]
    if "connect-src 'self'" not in response.headers.get("content-security-policy", ""):
        problems.append(f"{docs}: no Content-Security-Policy keeping requests on this origin")
    references = _DOCS_REFERENCES.findall(response.text)
    if not any(reference.endswith("openapi.json") for reference in references):
        problems.append(f"{docs}: loads no OpenAPI document ({references})")
    for reference in references:
        if not reference.startswith("/") or reference.startswith("//"):
            problems.append(f"{docs} loads {reference!r}: not a path of this origin")
            continue
        loaded = await client.get(base + reference)
        if loaded.status_code != 200 or not loaded.content:
            problems.append(f"{docs} loads {reference}: {loaded.status_code}")
        elif reference.endswith(".json") and "paths" not in loaded.json():
            problems.append(f"{docs} loads {reference}: not an OpenAPI document")
    return problems


def curl_requests(lines: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """The GET requests (URL, headers) that shell ``lines`` printed for a person make: ``NAME='value'``
    assignments, then ``curl -H 'Header: value' 'URL' [-o FILE]`` commands using ``$NAME``, as a POSIX
    shell would read them (so that a test runs what the person would paste, without needing curl; where
    curl would save the answer is left out)."""
    variables: dict[str, str] = {}
    requests: list[tuple[str, dict[str, str]]] = []
    for line in lines:
        words = shlex.split(line)
        if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
            continue
        assert words[0] == "curl", line
        words = [re.sub(r"\$([A-Z_]+)", lambda found: variables[found[1]], word) for word in words[1:]]
        headers: dict[str, str] = {}
        while words[0] == "-H":
            name, value = words[1].split(":", 1)
            headers[name] = value.strip()
            words = words[2:]
        if words[-2:-1] == ["-o"]:
            words = words[:-2]
        (url,) = words
        requests.append((url, headers))
    return requests


@contextlib.contextmanager
def connections_reset_mid_transaction(
    port: int, marker: str, target: str, statements: int, reset: Callable[[], None]
) -> Iterator[list[str]]:
    """Call `reset` (a `TcpProxy`'s, cutting every connection through it) in the middle of the transactions
    of SQLAlchemy connections to `port`: before each of the first `statements` statements starting with
    `target`, then at the commit of the next transaction that ran a statement starting with `marker`.
    Yields what was reset ("statement", then "commit")."""
    from sqlalchemy import Connection, Engine, event

    done: list[str] = []

    def before_statement(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if connection.engine.url.port != port:
            return
        if statement.startswith(marker):
            connection.info["vigie marked"] = True
        elif statement.startswith(target) and len(done) < statements:
            done.append("statement")
            reset()

    def before_commit(connection: Connection) -> None:
        marked = connection.info.pop("vigie marked", False)
        if connection.engine.url.port == port and marked and len(done) == statements:
            done.append("commit")
            reset()

    event.listen(Engine, "before_cursor_execute", before_statement)
    event.listen(Engine, "commit", before_commit)
    try:
        yield done
    finally:
        event.remove(Engine, "before_cursor_execute", before_statement)
        event.remove(Engine, "commit", before_commit)
