"""The journal waits out a PostgreSQL outage, through a proxy that cuts the database off: readiness turns red
during it and green after, events published meanwhile are appended once it is back, in order, none lost and
none doubled, and the journal still verifies; so when the database is down as the service starts, and when
its connections are reset in the middle of appends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from vigie_audit.commands import verify_store
from vigie_audit.journal import decode_leaf
from vigie_audit.service import serve
from vigie_audit.settings import AuditSettings
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import TreeHeadSigningKey
from vigie_core.audit import AuditEvent, AuditPublishSettings, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.database import make_engine
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.settings import NatsSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.proxy import TcpProxy
from vigie_embedded.testing import (
    PostgresSchema,
    connections_reset_mid_transaction,
    postgres_schema,
    running_service,
)

from .conftest import events
from .test_service import SERVICES, _key, assert_complete_and_in_order, publish_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresSchema]:
    async with postgres_schema("vigie_audit_outage") as found:
        yield found


@pytest.fixture
def proxy(postgres: PostgresSchema) -> Iterator[TcpProxy]:
    with TcpProxy.for_url(postgres.url, default_port=5432) as started:
        yield started


@pytest.fixture
def settings(nats_server: EmbeddedNats, postgres: PostgresSchema, proxy: TcpProxy) -> AuditSettings:
    """The service's settings, its journal in PostgreSQL through the proxy."""
    return AuditSettings(
        nats=NatsSettings(url=nats_server.url),
        database_url=SecretStr(proxy.redirect(postgres.url)),
        database_schema=postgres.schema,
        signing_key=SecretStr(_key()),
        auth=AuthSettings(local_key=SecretStr(_key())),
        audit=AuditPublishSettings(retry_initial_s=0.01, retry_max_s=0.1),
        fetch_batch=50,
        fetch_timeout_s=0.1,
        ack_wait_s=2,
        tree_head_interval_s=0.3,
    )


def reader(postgres: PostgresSchema) -> JournalStore:
    """The journal as the test reads it: straight from PostgreSQL, not through the proxy."""
    return JournalStore(make_engine(postgres.url, schema_name=postgres.schema))


async def journal_size(postgres: PostgresSchema) -> int:
    store = reader(postgres)
    try:
        return await store.tree_size()
    except Exception:  # the tables may not exist yet
        return 0
    finally:
        await store.close()


async def journaled(postgres: PostgresSchema) -> list[AuditEvent]:
    store = reader(postgres)
    try:
        return [decode_leaf(e.leaf).event async for e in store.iter_entries() if e.leaf is not None]
    finally:
        await store.close()


async def assert_intact(postgres: PostgresSchema, settings: AuditSettings) -> None:
    """Every entry's hash, every stored node and every signed tree head verify."""
    assert settings.signing_key is not None
    key = TreeHeadSigningKey.load(settings.signing_key.get_secret_value()).public_key
    store = reader(postgres)
    try:
        report = await verify_store(store, key)
    finally:
        await store.close()
    assert report.ok, report.summary()


def batch(per_service: int, start: int) -> list[AuditEvent]:
    return [e for service in SERVICES for e in events(per_service, service=service, start=start)]


async def readiness(runtime: ServiceRuntime) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{runtime.http_url}/readyz")
    return response.status_code, response.json().get("reasons", {})


async def eventually(condition: Callable[[], Awaitable[bool]], within_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.05)


def ready(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await readiness(runtime))[0] == 200

    return check


def database_red(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        code, reasons = await readiness(runtime)
        return code == 503 and "database unreachable" in reasons.get("database", "")

    return check


def holding(postgres: PostgresSchema, size: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await journal_size(postgres) >= size

    return check


async def test_an_outage_turns_readiness_red_and_the_journal_resumes_intact(
    settings: AuditSettings, nats_server: EmbeddedNats, postgres: PostgresSchema, proxy: TcpProxy
) -> None:
    before, during = batch(20, 0), batch(20, 20)
    async with running_service("audit", settings, serve) as runtime:
        await publish_all(nats_server.url, before)
        await eventually(holding(postgres, len(before)))
        await eventually(ready(runtime))

        proxy.cut()  # PostgreSQL is gone: its connections reset, new ones refused
        await publish_all(nats_server.url, during)
        await eventually(database_red(runtime))
        await asyncio.sleep(2.0)  # the consumer fails and waits, again and again
        assert await journal_size(postgres) == len(before)
        assert not runtime.stop_requested.is_set(), "the service kept running"
        assert (await readiness(runtime))[0] == 503
        token = LocalTokenIssuer.from_settings(settings.auth).mint("dpo-1", ["audit:read"])
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            response = await http.get(f"{runtime.http_url}/api/audit/v1/entries", params={"motive": "check"})
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), response.text

        proxy.restore()
        await eventually(holding(postgres, len(before) + len(during)))
        await eventually(ready(runtime))
        await asyncio.sleep(0.5)  # anything appended twice would be now
    stored = await journaled(postgres)
    assert_complete_and_in_order(before + during, [e for e in stored if e.service in SERVICES])
    # The refused API call may have been journaled (as it was asked), never more than once.
    assert [action_name(e.action) for e in stored if e.service not in SERVICES] in ([], ["audit_read"])
    await assert_intact(postgres, settings)


async def test_a_journal_started_while_the_database_is_down_waits_for_it(
    settings: AuditSettings, nats_server: EmbeddedNats, postgres: PostgresSchema, proxy: TcpProxy
) -> None:
    published = batch(20, 0)
    await publish_all(nats_server.url, published)
    proxy.cut()
    async with running_service("audit", settings, serve) as runtime:
        await eventually(database_red(runtime))
        await asyncio.sleep(2.0)
        assert not runtime.stop_requested.is_set(), "the service kept waiting"
        assert (await readiness(runtime))[0] == 503

        proxy.restore()
        await eventually(holding(postgres, len(published)))
        await eventually(ready(runtime))
    assert_complete_and_in_order(published, await journaled(postgres))
    await assert_intact(postgres, settings)


@pytest.fixture
def resets_mid_append(proxy: TcpProxy) -> Iterator[list[str]]:
    """Reset the service's connections (those through the proxy) in the middle of its appends: before it
    writes the tree nodes of its first two appends (the entries are written), and before the commit of the
    third. Yields what was reset."""
    with connections_reset_mid_transaction(
        proxy.port, "INSERT INTO audit_entries (", "INSERT INTO audit_tree_nodes", 2, proxy.reset
    ) as done:
        yield done


async def test_connections_reset_in_the_middle_of_appends_lose_and_double_nothing(
    settings: AuditSettings,
    nats_server: EmbeddedNats,
    postgres: PostgresSchema,
    resets_mid_append: list[str],
) -> None:
    published = batch(40, 0)
    small_batches = settings.model_copy(update={"fetch_batch": 10})
    await publish_all(nats_server.url, published)
    async with running_service("audit", small_batches, serve) as runtime:
        await eventually(holding(postgres, len(published)))
        await asyncio.sleep(0.5)  # anything appended twice would be now
        assert not runtime.stop_requested.is_set()
        errors = runtime.registry.get_sample_value("vigie_audit_journal_storage_errors_total")
    assert resets_mid_append == ["statement", "statement", "commit"]
    assert errors == 3
    assert_complete_and_in_order(published, await journaled(postgres))
    await assert_intact(postgres, settings)
