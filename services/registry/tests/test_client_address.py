"""Who the client of an objection is, and that no one learns it: X-Forwarded-For is believed only from
the proxies the operator trusts, and the real HTTP server (uvicorn, as every service runs it) writes no
client address to any log record or metric."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import ip_network

import httpx
import pytest

from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import log_record_text, running_service
from vigie_registry.declaration import SourceDeclaration
from vigie_registry.objections import client_address
from vigie_registry.service import API_PREFIX, serve
from vigie_registry.storage.store import RegistryStore

from .conftest import Database, declaration
from .test_service import make_settings, parsed

PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "hops", "client"),
    [
        # No trusted peer: the header is nobody's word, whatever it says.
        ("192.0.2.1", "203.0.113.9", 1, "192.0.2.1"),
        ("127.0.0.1", "203.0.113.9", 1, "127.0.0.1"),
        (None, "203.0.113.9", 1, "unknown"),
        # A trusted proxy: the address it saw, the last one appended.
        ("10.1.2.3", "203.0.113.9", 1, "203.0.113.9"),
        ("10.1.2.3", "198.51.100.1, 203.0.113.9", 1, "203.0.113.9"),  # the first one is the client's word
        ("::ffff:10.1.2.3", "203.0.113.9", 1, "203.0.113.9"),  # an IPv4 peer on a dual-stack socket
        ("fd00::5", "2001:db8::7", 1, "2001:db8::7"),
        # Two proxies appending: trusted ones are skipped from the right, within the hops.
        ("10.1.2.3", "198.51.100.1, 203.0.113.9, 10.9.9.9", 2, "203.0.113.9"),
        ("10.1.2.3", "198.51.100.1, 203.0.113.9, 10.9.9.9", 1, "10.9.9.9"),  # all trusted: the outermost
        ("10.1.2.3", "203.0.113.9", 3, "203.0.113.9"),  # fewer entries than hops
        # Without hops, or without a header, the peer.
        ("10.1.2.3", "203.0.113.9", 0, "10.1.2.3"),
        ("10.1.2.3", None, 1, "10.1.2.3"),
        ("10.1.2.3", " , ", 1, "10.1.2.3"),
    ],
)
def test_forwarded_for_is_read_only_from_a_trusted_proxy(
    peer: str | None, forwarded_for: str | None, hops: int, client: str
) -> None:
    assert client_address(peer, forwarded_for, hops=hops, trusted=PROXIES) == client
    assert client_address(peer, forwarded_for, hops=hops, trusted=[]) == (peer or "unknown")


# -- the real server --------------------------------------------------------------------------------------

CITIZEN = "127.0.0.23"  # a loopback address of its own, distinctive in any text
FORGED = "203.0.113.9"


@pytest.fixture
async def camera(database: Database) -> Database:
    """A database holding one active camera, north-gate, before the registry starts."""
    store = await RegistryStore.open(database.url, schema_name=database.schema)
    source = SourceDeclaration.model_validate(declaration()["source"])
    await store.create("north-gate", parsed(declaration()), "active", source, now=1_780_000_000)
    await store.close()
    return database


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if (await http.get(f"{url}/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the registry did not become ready")


async def _objections(url: str, local_address: str, forwarded: list[str | None]) -> list[int]:
    """Post one objection per entry of ``forwarded`` (an X-Forwarded-For, or none) from ``local_address``."""
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    statuses = []
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        for header in forwarded:
            response = await http.post(
                f"{url}{API_PREFIX}/public/cameras/north-gate/objections",
                headers={"X-Forwarded-For": header} if header else {},
            )
            assert response.status_code in (201, 429), response.text
            statuses.append(response.status_code)
    return statuses


@pytest.mark.integration
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_no_log_record_nor_metric_holds_the_objector_s_address(
    secured_nats_server: EmbeddedNats, camera: Database, every_log_record: list[logging.LogRecord]
) -> None:
    settings = make_settings(secured_nats_server, camera, objection={"rate_limit": "3/minute"})
    async with running_service("registry", settings, serve) as runtime:
        await _wait_ready(runtime.http_url)
        statuses = await _objections(runtime.http_url, CITIZEN, [None, FORGED, None, FORGED, FORGED])
        # Also the page's button, its scene view (read from VIEWS), and a request the server refuses early (an
        # unknown path).
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=CITIZEN)) as http:
            await http.get(f"{runtime.http_url}/cameras/north-gate", headers={"X-Forwarded-For": FORGED})
            view = await http.get(
                f"{runtime.http_url}/cameras/north-gate/view.jpg", headers={"X-Forwarded-For": FORGED}
            )
            assert view.status_code == 404  # none asked for
            await http.get(f"{runtime.http_url}/nowhere", headers={"X-Forwarded-For": FORGED})
            metrics = (await http.get(f"{runtime.http_url}/metrics")).text
    assert statuses == [201, 201, 201, 429, 429]  # one client: the forged header changed nothing
    assert "vigie_registry_objections_rate_limited_total 2.0" in metrics
    assert every_log_record, "the service logged nothing: the capture is broken"
    # The test's own HTTP client (httpx, httpcore) logs the address it connects from: not the server's.
    served = [r for r in every_log_record if r.name.split(".")[0] not in {"httpx", "httpcore"}]
    for address in (CITIZEN, FORGED):
        assert address not in metrics
        leaks = [log_record_text(r) for r in served if address in log_record_text(r)]
        assert not leaks, leaks[:3]


@pytest.mark.integration
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_forged_forwarded_for_does_not_get_around_the_rate_limit(
    secured_nats_server: EmbeddedNats, camera: Database
) -> None:
    # The default settings: no proxy is trusted. From 127.0.0.1 too, which uvicorn's own proxy support
    # would have believed.
    settings = make_settings(secured_nats_server, camera, objection={"rate_limit": "3/minute"})
    async with running_service("registry", settings, serve) as runtime:
        await _wait_ready(runtime.http_url)
        forged = await _objections(runtime.http_url, "127.0.0.1", [f"203.0.113.{i}" for i in range(20)])
        plain = await _objections(runtime.http_url, "127.0.0.2", [None] * 20)
    assert forged == plain == [201] * 3 + [429] * 17


@pytest.mark.integration
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    secured_nats_server: EmbeddedNats, camera: Database
) -> None:
    objection = {"rate_limit": "3/minute", "forwarded_hops": 1, "trusted_proxies": ["127.0.0.0/24"]}
    settings = make_settings(secured_nats_server, camera, objection=objection)
    async with running_service("registry", settings, serve) as runtime:
        await _wait_ready(runtime.http_url)
        honoured = await _objections(runtime.http_url, "127.0.0.1", [f"203.0.113.{i}" for i in range(20)])
        # A peer outside the trusted network is its own client, whatever it forwards.
        outsider = await _objections(runtime.http_url, "127.0.1.1", [f"198.51.100.{i}" for i in range(5)])
    assert honoured == [201] * 20
    assert outsider == [201] * 3 + [429] * 2
