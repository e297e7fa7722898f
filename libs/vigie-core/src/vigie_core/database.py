"""The SQL engine every service that stores data uses: SQLite (the embedded default) or PostgreSQL.

SQLite gets WAL, full sync (a commit acknowledged to NATS survives a power cut) and real transactions;
PostgreSQL gets an optional schema through the connection's search_path, a connection timeout, and pooled
connections checked before use (one the database dropped is replaced, not handed out).

Outages are waited out, never crashed on (:class:`DatabaseHealth`): a probe turns the service's readiness
red while the database does not answer, and :meth:`DatabaseHealth.retry` repeats a piece of work with
back-off until it succeeds or the service is asked to stop. :func:`is_unreachable` tells a database that
cannot be reached (down, restarting, the connection lost) from a statement that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from vigie_core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

    from vigie_core.lifecycle import ServiceRuntime

__all__ = [
    "WRITE_OPTION",
    "DatabaseHealth",
    "DatabaseWaitStoppedError",
    "answer_outages_with_503",
    "is_database_failure",
    "is_unreachable",
    "make_engine",
    "migrate",
    "watch_database",
]

logger = logging.getLogger("vigie.database")

T = TypeVar("T")

# Execution option marking a writer: on SQLite its transactions take the write lock at BEGIN.
WRITE_OPTION = "vigie_write"
# How long connecting to PostgreSQL may take (asyncpg's own default is 60 s: a partition would hold a
# retry, or the readiness probe, that long).
CONNECT_TIMEOUT_S = 10


def make_engine(url: str, *, schema_name: str | None = None) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``/``+psycopg``)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        _configure_sqlite(engine)
        return engine
    if backend != "postgresql":
        raise ValueError(f"database_url: {backend} is not supported (sqlite or postgresql)")
    asyncpg = parsed.get_driver_name() == "asyncpg"
    connect_args: dict[str, Any] = {"timeout" if asyncpg else "connect_timeout": CONNECT_TIMEOUT_S}
    if schema_name:
        if asyncpg:
            connect_args["server_settings"] = {"search_path": schema_name}
        else:
            connect_args["options"] = f"-csearch_path={schema_name}"
    # pool_pre_ping: a pooled connection the database dropped (a restart, a failover) is replaced at checkout
    # instead of failing the first statement after an outage.
    return create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's implicit transactions start late and never around DDL; SQLAlchemy's "begin" event
        # below starts them explicitly instead (the recipe of SQLAlchemy's SQLite documentation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First, so that even switching a new file to WAL waits for another connection's lock.
        cursor.execute("PRAGMA busy_timeout=10000")
        _set_wal(cursor)
        # FULL: a commit acknowledged to NATS survives a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        # 64 MiB of pages: unique indexes on random ids have no locality, keep them in memory.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        # A writer takes the write lock first (IMMEDIATE), so it waits for another writer (busy_timeout)
        # instead of failing when its read snapshot cannot be upgraded.
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _set_wal(cursor: Any, wait_s: float = 10.0) -> None:
    """Put the file in WAL mode, once. WAL is a property of the file, kept once set, so it is set only on a
    file not in WAL yet; setting it takes a lock that does not wait for the busy timeout, so two
    connections opening a new file together, or one asking while another writes, get "database is
    locked": retried until the mode is WAL (set by either)."""
    deadline = time.monotonic() + wait_s
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:  # the driver's OperationalError, whichever adapter wraps it
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# Alembic installs its ``op`` and ``context`` proxies as module globals for the length of a migration,
# so two migrations in one process (two stores, e.g. a test and a service) must not overlap.
_ALEMBIC_GLOBALS = threading.Lock()


def _upgrade(connection: Connection, package: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files(package) / "migrations"))
    config.attributes["connection"] = connection
    with _ALEMBIC_GLOBALS:
        command.upgrade(config, "head")


async def migrate(engine: AsyncEngine, package: str) -> None:
    """Bring ``package``'s tables to its latest Alembic migration (``<package>/migrations``), idempotently.

    Replicas starting together migrate one at a time: on PostgreSQL under an advisory lock keyed by the
    package, on SQLite under the write lock taken at BEGIN.
    """
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(package.encode()).digest()[:8], "big", signed=True)
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        await connection.run_sync(_upgrade, package)


# -- outages -------------------------------------------------------------------------------------------


def _unreachable_driver_errors() -> tuple[type[BaseException], ...]:
    """The drivers' own exceptions for a server that cannot be reached, for those that escape SQLAlchemy's
    wrapping (asyncpg's, raised while connecting)."""
    try:
        from asyncpg import exceptions as asyncpg_errors
    except ImportError:  # pragma: no cover - asyncpg is installed with every service
        return ()
    return (
        asyncpg_errors.PostgresConnectionError,  # class 08: the connection failed or does not exist
        asyncpg_errors.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
        asyncpg_errors.AdminShutdownError,  # 57P01: terminated by a restart or pg_terminate_backend
        asyncpg_errors.CrashShutdownError,  # 57P02
        asyncpg_errors.TooManyConnectionsError,  # 53300: the server is full for now
        asyncpg_errors.InterfaceError,  # "connection is closed", "the connection was lost"
    )


_DRIVER_ERRORS = _unreachable_driver_errors()


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says that the database cannot be reached now (down, restarting, the network cut,
    the connection lost mid-transaction), rather than that the statement failed: the work is to be
    tried again later, unchanged.

    asyncpg raises some of these unwrapped (``ConnectionRefusedError`` while connecting); SQLAlchemy wraps
    the others, marking a lost connection as invalidated.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        # OperationalError: psycopg's failed connection, SQLite's file that cannot be opened; a lock timeout
        # too, which also passes.
        if isinstance(
            current,
            exc.OperationalError | exc.InterfaceError | exc.DisconnectionError | exc.TimeoutError | OSError,
        ):
            return True
        if _DRIVER_ERRORS and isinstance(current, _DRIVER_ERRORS):
            return True
        current = current.__cause__ or (current.orig if isinstance(current, exc.DBAPIError) else None)
    return False


def is_database_failure(error: BaseException) -> bool:
    """Whether ``error`` is the database's (unreachable, or a statement refused: a lock, a conflict with
    another replica): what a consumer retries, keeping its messages, rather than a bug in its own code."""
    return isinstance(error, exc.SQLAlchemyError) or is_unreachable(error)


class DatabaseWaitStoppedError(Exception):
    """The service was asked to stop while it waited for its database."""


def _described(error: BaseException) -> str:
    """The error's type and first words, without SQLAlchemy's statement and link."""
    said = " ".join(str(error).split()).split(" [SQL:")[0].split(" (Background on this error")[0]
    return f"{type(error).__name__}: {said[:300]}" if said else type(error).__name__


class DatabaseHealth:
    """Whether the service's database answers, as a readiness check (:meth:`readiness`): a probe every
    ``interval_s`` (``SELECT 1`` within ``timeout_s``) while :meth:`watch` runs, and what the service's own
    work sees in between (:meth:`retry` reports every failure that says the database is unreachable)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._task: asyncio.Task[None] | None = None
        self.problem: str | None = None

    def readiness(self) -> str | None:
        """None while the database answers, or why it does not."""
        return self.problem

    def failed(self, error: BaseException) -> None:
        """Work on the database failed: readiness turns red if it says the database is unreachable."""
        if is_unreachable(error):
            self._unreachable(_described(error))

    def _unreachable(self, reason: str) -> None:
        if self.problem is None:
            logger.warning("the database is unreachable: %s", reason)
        self.problem = f"database unreachable: {reason}"

    def succeeded(self) -> None:
        if self.problem is not None:
            logger.info("the database answers again")
        self.problem = None

    async def probe(self) -> bool:
        """Ask the database for ``SELECT 1``; whether it answered in time."""
        try:
            async with asyncio.timeout(self._timeout_s), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except TimeoutError:
            self._unreachable(f"no answer within {self._timeout_s:g} s")
            return False
        except Exception as error:  # whatever it is (a refused password too), the database did not answer
            self._unreachable(_described(error))
            return False
        self.succeeded()
        return True

    def watch(self) -> None:
        """Probe the database every ``interval_s`` in the background, until :meth:`close`."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="database-health")

    async def _watch(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self._interval_s)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def retry(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        stop: asyncio.Event,
        what: str,
        retry_on: Callable[[BaseException], bool] = is_unreachable,
        on_failure: Callable[[BaseException], None] | None = None,
        before_wait: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``work()``, tried again with exponential back-off (``retry_initial_s`` up to ``retry_max_s``,
        with jitter) while it fails with an error ``retry_on`` accepts (by default: the database is
        unreachable). Any other error is raised at once.

        Each failure is logged, turns readiness red if the database is unreachable, and is passed to
        ``on_failure``; ``before_wait`` runs before each wait (e.g. to keep messages in hand). Raises
        :class:`DatabaseWaitStoppedError` when ``stop`` is set after a failure, without trying again.
        """

        def record(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if error is None:
                return
            self.failed(error)
            if on_failure is not None:
                on_failure(error)
            log = logger.warning if is_unreachable(error) else logger.error
            log(
                "%s failed (attempt %d), retrying in %.1f s: %s",
                what,
                state.attempt_number,
                state.upcoming_sleep,
                _described(error),
            )

        async def wait(seconds: float) -> None:
            if not stop.is_set() and before_wait is not None:
                await before_wait()
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), seconds)
            if stop.is_set():
                raise DatabaseWaitStoppedError(f"stopped while {what} was failing")

        retrying = AsyncRetrying(
            sleep=wait,
            retry=retry_if_exception(retry_on),
            wait=wait_exponential_jitter(
                multiplier=self._retry_initial_s, max=self._retry_max_s, jitter=self._retry_initial_s
            ),
            before_sleep=record,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await work()
                self.succeeded()
                return result
        raise AssertionError("unreachable: tenacity retries until it returns or raises")


def watch_database(runtime: ServiceRuntime, engine: AsyncEngine, **options: Any) -> DatabaseHealth:
    """The service's :class:`DatabaseHealth`: readiness check ``database``, probing from now on, stopped
    with its runtime (before the engine is disposed of, when the engine's owner was registered first)."""
    health = DatabaseHealth(engine, **options)
    runtime.readiness.add("database", health.readiness)
    health.watch()
    runtime.exit_stack.push_async_callback(health.close)
    return health


def answer_outages_with_503(app: FastAPI, retry_after_s: int = 5) -> None:
    """Make ``app`` answer a request that failed because the database is unreachable with a 503 and
    ``Retry-After`` (the caller is not at fault and may try again), rather than a 500 with a traceback in
    the log. Any other failure is left to the app."""
    from fastapi.responses import JSONResponse

    async def unavailable(_request: Request, error: Exception) -> Response:
        if not is_unreachable(error):
            raise error
        logger.warning("a request failed, the database is unreachable: %s", _described(error))
        return JSONResponse(
            {"detail": "the database is unreachable now: retry later"},
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    for kind in (exc.SQLAlchemyError, OSError, *_DRIVER_ERRORS):
        app.add_exception_handler(kind, unavailable)
