"""The fault proxy against a real echo server: it forwards both ways, a cut refuses and resets, a black hole
holds and delivers late, a reset spares new connections, and restoring keeps the port. In front of a real
PostgreSQL, with each driver, every fault it makes reads as an unreachable database
(:func:`vigie_core.database.is_unreachable`), which the services wait out."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vigie_core.database import (
    DatabaseHealth,
    DatabaseWaitStoppedError,
    is_database_failure,
    is_unreachable,
    make_engine,
)
from vigie_embedded.proxy import Cut, TcpProxy
from vigie_embedded.testing import postgres_schema


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except ConnectionResetError:
            pass  # the proxy passes on a reset: expected


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    with _EchoServer(("127.0.0.1", 0), _Echo) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield "127.0.0.1", server.server_address[1]
        finally:
            server.shutdown()
            thread.join(5)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*echo) as started:
        yield started


def connect(proxy: TcpProxy, timeout_s: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)


def echoed(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def is_reset(sock: socket.socket) -> bool:
    """Whether the connection was reset (or closed) rather than still echoing."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_it_forwards_both_ways(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 1024  # larger than one read
    with connect(proxy) as a, connect(proxy) as b:
        assert echoed(a, payload) == payload
        assert echoed(b, b"hello") == b"hello"
        assert proxy.connections == 2
    assert proxy.accepted == 2
    assert proxy.state is None


def test_a_cut_resets_open_connections_refuses_new_ones_and_restore_keeps_the_port(proxy: TcpProxy) -> None:
    port = proxy.port
    with connect(proxy) as before:
        assert echoed(before, b"ping") == b"ping"
        proxy.cut()
        assert proxy.state is Cut.REFUSE
        assert is_reset(before)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.restore()
    assert proxy.port == port
    with connect(proxy) as after:
        assert echoed(after, b"pong") == b"pong"


def test_a_reset_spares_new_connections(proxy: TcpProxy) -> None:
    with connect(proxy) as before:
        assert echoed(before, b"ping") == b"ping"
        proxy.reset()
        assert is_reset(before)
    with connect(proxy) as after:
        assert echoed(after, b"pong") == b"pong"
    assert proxy.state is None


def test_a_black_hole_holds_everything_and_delivers_it_on_restore(proxy: TcpProxy) -> None:
    with connect(proxy, timeout_s=0.3) as open_before:
        assert echoed(open_before, b"ping") == b"ping"
        proxy.cut(Cut.BLACKHOLE)
        open_before.sendall(b"held")
        with pytest.raises(TimeoutError):
            open_before.recv(16)
        # A new connection is accepted, and answered by no one.
        with connect(proxy, timeout_s=0.3) as opened_during:
            opened_during.sendall(b"late")
            with pytest.raises(TimeoutError):
                opened_during.recv(16)
            proxy.restore()
            opened_during.settimeout(2)
            open_before.settimeout(2)
            assert opened_during.recv(16) == b"late"
            assert open_before.recv(16) == b"held"


def test_a_target_that_is_down_resets_the_client_at_once() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens on it once closed
    with TcpProxy("127.0.0.1", port) as proxy:
        try:
            sock = connect(proxy)
        except ConnectionResetError:
            return  # reset even before connect() returned: at once indeed (a race the loopback can win)
        with sock:
            assert is_reset(sock)


def test_stopping_ends_every_connection(echo: tuple[str, int]) -> None:
    proxy = TcpProxy(*echo).start()
    sock = connect(proxy)
    try:
        assert echoed(sock, b"ping") == b"ping"
        proxy.stop()
        assert is_reset(sock)
    finally:
        sock.close()
    with pytest.raises(RuntimeError):
        proxy.cut()


def test_a_url_is_redirected_through_the_proxy(echo: tuple[str, int]) -> None:
    url = f"postgresql+asyncpg://postgres:secret@{echo[0]}:{echo[1]}/test?ssl=disable"
    proxy = TcpProxy.for_url(url)
    assert (proxy.host, proxy.target_port) == echo
    with proxy:
        assert (
            proxy.redirect(url)
            == f"postgresql+asyncpg://postgres:secret@127.0.0.1:{proxy.port}/test?ssl=disable"
        )
        assert proxy.redirect("nats://127.0.0.1:4222") == f"nats://127.0.0.1:{proxy.port}"
    with pytest.raises(ValueError, match="no host and port"):
        TcpProxy.for_url("sqlite+aiosqlite:///var/statistics.sqlite3")


# -- in front of PostgreSQL: what the services see of each fault -----------------------------------------


@pytest.fixture(params=["asyncpg", "psycopg"])
async def postgres_proxy(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TcpProxy, AsyncEngine]]:
    """A proxy to the test PostgreSQL (skipped without one), and an engine through it with each driver."""
    async with postgres_schema("proxytest") as found:
        url = found.url.replace("+asyncpg", f"+{request.param}")
        with TcpProxy.for_url(url, default_port=5432) as proxy:
            engine = make_engine(proxy.redirect(url), schema_name=found.schema)
            try:
                yield proxy, engine
            finally:
                await engine.dispose()


async def failure(engine: AsyncEngine, during: Callable[[], None] = lambda: None) -> BaseException:
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
            during()
            await connection.execute(text("SELECT 2"))
    except Exception as error:
        return error
    raise AssertionError("no failure")


@pytest.mark.integration
async def test_each_fault_reads_as_an_unreachable_database(
    postgres_proxy: tuple[TcpProxy, AsyncEngine],
) -> None:
    proxy, engine = postgres_proxy
    health = DatabaseHealth(engine)
    assert await health.probe()
    assert is_unreachable(await failure(engine, proxy.reset))  # reset mid-transaction
    proxy.cut()
    refused = await failure(engine)  # asyncpg raises ConnectionRefusedError itself, unwrapped
    assert is_unreachable(refused), refused
    assert not await health.probe()
    assert (health.readiness() or "").startswith("database unreachable")
    proxy.restore()
    assert await health.probe()
    assert health.readiness() is None
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError) as refused_statement:
            await connection.execute(text("SELECT * FROM no_such_table"))
    assert not is_unreachable(refused_statement.value)
    assert is_database_failure(refused_statement.value)
    assert not is_database_failure(ValueError("a bug"))


@pytest.mark.integration
async def test_retry_waits_out_a_cut_and_gives_up_when_asked_to_stop(
    postgres_proxy: tuple[TcpProxy, AsyncEngine],
) -> None:
    proxy, engine = postgres_proxy
    health = DatabaseHealth(engine, retry_initial_s=0.05, retry_max_s=0.2)
    stop = asyncio.Event()
    failures: list[BaseException] = []

    async def answer() -> int:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT 42"))).scalar_one())

    proxy.cut()
    asyncio.get_running_loop().call_later(1.0, proxy.restore)
    assert await health.retry(answer, stop=stop, what="asking", on_failure=failures.append) == 42
    assert failures
    assert all(is_unreachable(f) for f in failures)
    assert health.readiness() is None

    proxy.cut()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    with pytest.raises(DatabaseWaitStoppedError):
        await health.retry(answer, stop=stop, what="asking")
    assert health.readiness() is not None
