"""A TCP proxy that tests and benchmarks cut and restore: a database (or any TCP service) goes away and
comes back while the service under test runs.

``with TcpProxy("127.0.0.1", 5432) as proxy:`` forwards a free port of 127.0.0.1 (``proxy.port``) to the
target. It runs in a thread with its own event loop, so synchronous and asynchronous tests use it alike:
each call returns once its effect is in place. The faults it makes:

- ``cut()`` (:attr:`Cut.REFUSE`): the service is down (a crash, a restart, its pod rescheduled). Every open
  connection is reset (an RST, as a rebooted peer's kernel answers) and new ones are refused
  (ECONNREFUSED: nothing listens on the port any more).
- ``cut(Cut.BLACKHOLE)``: the network drops everything (a partition, a dead node). Connections stay open,
  new ones are accepted, and nothing passes either way until ``restore()``; what was sent meanwhile is
  delivered then, as TCP's retransmissions would.
- ``reset()``: every open connection is reset and new ones go through (a failover, a firewall or NAT
  forgetting idle connections, ``pg_terminate_backend``).
- ``restore()``: new connections are forwarded again, on the same port.

A reachable proxy whose target refuses resets the client's connection at once.

No library on PyPI does this without a server of its own to install (Toxiproxy is a Go program).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Cut", "TcpProxy"]

logger = logging.getLogger("vigie.embedded.proxy")

T = TypeVar("T")
_CHUNK = 64 * 1024
_CALL_TIMEOUT_S = 10.0


class Cut(enum.Enum):
    """How :meth:`TcpProxy.cut` cuts the service off."""

    REFUSE = "refuse"  # the service is down: open connections reset, new ones refused
    BLACKHOLE = "blackhole"  # the network drops everything: nothing passes, nothing is closed


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close a connection abruptly: SO_LINGER 0 makes the kernel send an RST instead of a FIN."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self._closed = False

    def closed(self) -> bool:
        return self._closed

    def reset(self) -> None:
        self._closed = True
        _reset(self.client)
        _reset(self.target)
        for pump in self.pumps:
            pump.cancel()


class TcpProxy:
    """Forwards ``listen_host:listen_port`` (a free port by default) to ``host:port``; see the module."""

    def __init__(self, host: str, port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.host = host
        self.target_port = port
        self.listen_host = listen_host
        self._port = listen_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._passing: asyncio.Event | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._cut: Cut | None = None
        self.accepted = 0  # connections accepted since the start, cut or not

    @classmethod
    def for_url(cls, url: str, default_port: int | None = None) -> TcpProxy:
        """A proxy (not started) to the host and port of ``url`` (``scheme://user@host:port/...``)."""
        parsed = urlsplit(url)
        port = parsed.port or default_port
        if parsed.hostname is None or port is None:
            raise ValueError(f"{url!r} names no host and port")
        return cls(parsed.hostname, port)

    def redirect(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's: the same service, through the proxy."""
        parsed = urlsplit(url)
        credentials = parsed.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parsed._replace(netloc=f"{netloc}{self.listen_host}:{self.port}"))

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("the proxy is running already")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"tcp-proxy-{self.target_port}", daemon=True
        )
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_CALL_TIMEOUT_S)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port clients connect to (the same for the proxy's whole life, cut or not)."""
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def state(self) -> Cut | None:
        """The cut in force, or None while forwarding."""
        return self._cut

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._links)

    def cut(self, how: Cut = Cut.REFUSE) -> None:
        """Cut the target off (see :class:`Cut`) until :meth:`restore`."""
        self._call(self._do_cut(how))

    def reset(self) -> None:
        """Reset every open connection; new ones go through (unless cut)."""
        self._call(self._reset_all())

    def restore(self) -> None:
        """Forward again: new connections reach the target, and a black hole delivers what it held."""
        self._call(self._restore())

    # -- in the proxy's loop -------------------------------------------------------------------------------

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            work.close()
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(_CALL_TIMEOUT_S)

    async def _start(self) -> None:
        self._passing = asyncio.Event()
        self._passing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._port, reuse_address=True, backlog=128
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._reset_all()
        if self._passing is not None:
            self._passing.set()  # handlers waiting for a restore find their link closed and end
        # The handlers end by themselves once their links are reset (cancelling one makes asyncio's stream
        # machinery log the cancellation as an error); one stuck connecting is cancelled all the same.
        if self._handlers:
            _, stuck = await asyncio.wait(list(self._handlers), timeout=_CALL_TIMEOUT_S / 2)
            for handler in stuck:
                handler.cancel()

    async def _do_cut(self, how: Cut) -> None:
        assert self._passing is not None
        self._cut = how
        self._passing.clear()
        if how is Cut.REFUSE:
            if self._server is not None:
                self._server.close()  # nothing listens: new connections are refused by the kernel
                self._server = None
            await self._reset_all()
        logger.info("%s:%d cut off (%s)", self.host, self.target_port, how.value)

    async def _reset_all(self) -> None:
        links = list(self._links)
        for link in links:
            link.reset()
        # Let the pumps see their cancellation, so that no byte crosses after this returns.
        await asyncio.sleep(0)
        if links:
            logger.info("reset %d connection(s) to %s:%d", len(links), self.host, self.target_port)

    async def _restore(self) -> None:
        assert self._passing is not None
        if self._server is None:
            await self._listen()
        self._cut = None
        self._passing.set()
        logger.info("%s:%d restored", self.host, self.target_port)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._passing is not None
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        link = _Link(client_writer)
        self._links.add(link)
        self.accepted += 1
        try:
            await self._passing.wait()  # a black hole accepts, then holds the connection
            if link.closed():
                return
            try:
                target_reader, link.target = await asyncio.open_connection(self.host, self.target_port)
            except OSError as error:
                logger.debug("%s:%d refused: %s", self.host, self.target_port, error)
                link.reset()
                return
            if link.closed():  # reset while connecting
                link.reset()
                return
            link.pumps = [
                asyncio.create_task(self._pump(client_reader, link.target, link)),
                asyncio.create_task(self._pump(target_reader, client_writer, link)),
            ]
            await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            self._handlers.discard(task)
            for writer in (client_writer, link.target):
                if writer is not None and not writer.transport.is_closing():
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        assert self._passing is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._passing.wait()  # a black hole holds what was sent, and reads no more
                writer.write(data)
                await writer.drain()
            # One side finished sending: pass the half-close on, the other direction goes on.
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except OSError:
            link.reset()  # a reset on one side resets the other, as a dead peer would
