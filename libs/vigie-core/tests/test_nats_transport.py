"""nats-py's reconnection attempts leave no socket open (vigie_core.nats_transport): a client whose broker
restarts, and whose attempts meet a port that accepts connections and closes them (a server starting or
stopping), reconnects to the real nats-server with no unclosed socket left for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import warnings
from collections.abc import Callable

import nats
import pytest

from vigie_core.nats_transport import close_abandoned_sockets
from vigie_embedded.nats import nats_server_binary
from vigie_embedded.processes import free_port

pytestmark = pytest.mark.integration


def nats_server(port: int) -> subprocess.Popen[bytes]:
    command = [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")


async def test_failed_reconnection_attempts_leave_no_socket_open() -> None:
    close_abandoned_sockets()  # done on importing vigie_core; again does nothing
    port = free_port()
    server = nats_server(port)
    try:
        attempts = 0

        async def ignored(_error: Exception) -> None:
            pass

        async def slam(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            writer.close()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            client = await nats.connect(
                f"nats://127.0.0.1:{port}",
                reconnect_time_wait=0.05,
                max_reconnect_attempts=-1,
                error_cb=ignored,
            )
            server.kill()
            server.wait()
            # Where the server was, something that accepts and hangs up: every attempt fails after its
            # socket is open.
            impostor = await asyncio.start_server(slam, "127.0.0.1", port)
            await until(lambda: attempts >= 3)
            impostor.close()
            await impostor.wait_closed()
            server = nats_server(port)
            await until(lambda: client.is_connected)
            await client.publish("anything", b"")
            await client.flush()
            await client.close()
            gc.collect()
        unclosed = [str(w.message) for w in caught if "unclosed" in str(w.message)]
        assert attempts >= 3
        assert unclosed == []
    finally:
        server.kill()
        server.wait()
