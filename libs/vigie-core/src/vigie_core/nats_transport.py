"""A fix for nats-py's TCP transport, applied when :mod:`vigie_core.messaging` (which every process talking
to NATS imports) is imported.

nats-py (2.x) reuses one ``TcpTransport`` across reconnection attempts. When an attempt opens a socket but
the handshake then fails (a server still starting, or shutting down, accepts the connection and closes it or
answers too late), the next attempt opens another socket over the first without closing it: each failed
attempt leaves a socket open until the garbage collector finds it (with a ResourceWarning, "unclosed
transport"). A service reconnecting through a broker restart accumulates them; a test that restarts
brokers sees the warning surface in whichever test runs when the collector does.

:func:`close_abandoned_sockets` makes a connection attempt close the previous attempt's socket first
(closing an already closed one does nothing). Idempotent.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.transport import TcpTransport

__all__ = ["close_abandoned_sockets"]

_PATCHED = "_vigie_closes_abandoned_sockets"


def close_abandoned_sockets() -> None:
    if getattr(TcpTransport.connect, _PATCHED, False):
        return
    connect: Callable[..., Awaitable[None]] = TcpTransport.connect

    @functools.wraps(connect)
    async def connect_closing_the_previous(self: TcpTransport, *args: Any, **kwargs: Any) -> None:
        # The plain socket's writer, and the TLS one over it when the connection was upgraded.
        for writer in {id(w): w for w in (self._bare_io_writer, self._io_writer) if w is not None}.values():
            writer.close()
        await connect(self, *args, **kwargs)

    setattr(connect_closing_the_previous, _PATCHED, True)
    TcpTransport.connect = connect_closing_the_previous  # type: ignore[method-assign]
