"""The test servers run uvicorn as the services do: no client address in any log record, and no belief
in X-Forwarded-For."""

import contextlib
import logging

import httpx
from fastapi import FastAPI, Request

from vigie_embedded.testing import ThreadedServer, log_record_text

CLIENT = "127.0.0.23"
FORGED = "203.0.113.9"


async def _app(_: contextlib.AsyncExitStack) -> FastAPI:
    app = FastAPI()

    @app.get("/client")
    def client(request: Request) -> str:
        return request.client.host if request.client else ""

    return app


def test_no_client_address_is_logged_nor_forged(every_log_record: list[logging.LogRecord]) -> None:
    with ThreadedServer(_app) as server:
        for local in (CLIENT, "127.0.0.1"):  # uvicorn's own proxy support believed 127.0.0.1
            with httpx.Client(transport=httpx.HTTPTransport(local_address=local)) as client:
                seen = client.get(f"{server.base_url}/client", headers={"X-Forwarded-For": FORGED})
                assert seen.json() == local
                assert client.get(f"{server.base_url}/nowhere").status_code == 404
    served = [r for r in every_log_record if r.name.split(".")[0] not in {"httpx", "httpcore"}]
    assert any(r.name.startswith("uvicorn") for r in served), "uvicorn logged nothing: the capture is broken"
    for address in (CLIENT, FORGED):
        assert not [log_record_text(r) for r in served if address in log_record_text(r)]
