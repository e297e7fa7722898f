"""The audit service in-process with a real nats-server: restarts, a crash between commit and
acknowledgement, garbage on the stream, and the API's reads journaled through the same path."""

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from vigie_audit.commands import verify_store
from vigie_audit.service import serve
from vigie_audit.settings import AuditSettings
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import TreeHeadSigningKey
from vigie_core.audit import AuditEvent, AuditPublishSettings, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.database import make_engine
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import connect
from vigie_core.settings import NatsSettings
from vigie_core.streams import audit_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import offline_docs_problems, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
EventFactory = Callable[..., list[AuditEvent]]
SERVICES = ("registry", "aggregation", "ingest")


def _key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


@pytest.fixture
def settings(nats_server: EmbeddedNats, tmp_path: Path) -> AuditSettings:
    return AuditSettings(
        nats=NatsSettings(url=nats_server.url),
        database_url=SecretStr(f"sqlite+aiosqlite:///{tmp_path / 'journal.sqlite3'}"),
        signing_key=SecretStr(_key()),
        auth=AuthSettings(local_key=SecretStr(_key())),
        audit=AuditPublishSettings(retry_initial_s=0.01, retry_max_s=0.1),
        fetch_batch=50,
        fetch_timeout_s=0.1,
        ack_wait_s=2,
        tree_head_interval_s=0.3,
    )


def reader(settings: AuditSettings) -> JournalStore:
    """The journal as a reader sees it (no migration: that is the service's)."""
    return JournalStore(make_engine(settings.database_url.get_secret_value()))


async def journal_size(settings: AuditSettings) -> int:
    store = reader(settings)
    try:
        return await store.tree_size()
    except OperationalError:
        return 0  # the service has not created the tables yet
    finally:
        await store.close()


async def wait_until(condition: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    """Poll ``condition`` (the journal is another component's database: there is no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.05)


async def publish_all(nats_url: str, events: list[AuditEvent], pause_every: int = 40) -> None:
    """As each service's publisher would: its own subject, the event id as Nats-Msg-Id, in order."""
    nc = await connect(NatsSettings(url=nats_url), "publishers")
    js = nc.jetstream()

    async def one_service(service: str) -> None:
        for i, event in enumerate(e for e in events if e.service == service):
            await js.publish(
                audit_subject(service), event.SerializeToString(), headers={"Nats-Msg-Id": event.event_id}
            )
            if i % pause_every == pause_every - 1:
                await asyncio.sleep(0.02)  # spread over time, so the service is stopped mid-stream

    await asyncio.gather(*(one_service(s) for s in SERVICES))
    await nc.close()


def interleaved(make_events: EventFactory, per_service: int) -> list[AuditEvent]:
    return [e for service in SERVICES for e in make_events(per_service, service=service)]


async def journaled(settings: AuditSettings) -> list[AuditEvent]:
    from vigie_audit.journal import decode_leaf

    store = reader(settings)
    try:
        return [decode_leaf(e.leaf).event async for e in store.iter_entries() if e.leaf is not None]
    finally:
        await store.close()


def assert_complete_and_in_order(events: list[AuditEvent], stored: list[AuditEvent]) -> None:
    assert len(stored) == len(events), "nothing lost, nothing duplicated"
    assert {e.event_id for e in stored} == {e.event_id for e in events}
    for service in SERVICES:
        sequence = [int(e.details["seq"]) for e in stored if e.service == service]
        assert sequence == sorted(sequence), f"{service}'s events out of order"


async def test_a_restart_mid_stream_loses_and_duplicates_nothing(
    settings: AuditSettings, nats_server: EmbeddedNats, make_events: EventFactory
) -> None:
    events = interleaved(make_events, 500)
    publishing = asyncio.create_task(publish_all(nats_server.url, events))

    async with running_service("audit", settings, serve):
        await wait_until(lambda: _at_least(settings, 300))
    stopped_at = await journal_size(settings)
    assert stopped_at < len(events), "stopped mid-stream"
    await publishing  # the rest arrives while the journal is down

    async with running_service("audit", settings, serve):
        await wait_until(lambda: _at_least(settings, len(events)))
        await asyncio.sleep(0.5)  # anything redelivered twice would land now
    stored = await journaled(settings)
    assert_complete_and_in_order(events, stored)

    store = reader(settings)
    try:
        assert settings.signing_key is not None
        key = TreeHeadSigningKey.load(settings.signing_key.get_secret_value()).public_key
        report = await verify_store(store, key)
        assert report.ok, report.summary()
        assert report.tree_heads_checked >= 2
        assert (await store.latest_tree_head()) is not None
    finally:
        await store.close()


async def _at_least(settings: AuditSettings, size: int) -> bool:
    return await journal_size(settings) >= size


async def test_a_crash_between_commit_and_acknowledgement_appends_nothing_twice(
    settings: AuditSettings,
    nats_server: EmbeddedNats,
    make_events: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    committed = JournalStore.append
    calls = {"count": 0}

    async def append_then_fail(self: JournalStore, events: list[AuditEvent], now: object = None) -> object:
        result = await committed(self, events)
        calls["count"] += 1
        if calls["count"] in (2, 3):  # committed, then the acknowledgements never happen
            raise OperationalError("simulated crash after the commit", {}, RuntimeError("gone"))
        return result

    monkeypatch.setattr(JournalStore, "append", append_then_fail)
    events = interleaved(make_events, 100)
    await publish_all(nats_server.url, events)
    async with running_service("audit", settings, serve) as runtime:
        await wait_until(lambda: _at_least(settings, len(events)))
        await asyncio.sleep(0.3)
        duplicates = _sample(runtime, "vigie_audit_journal_duplicate_events_total")
        errors = _sample(runtime, "vigie_audit_journal_storage_errors_total")
    assert errors == 2
    assert duplicates >= 2, "the retried batches were found already journaled"
    assert_complete_and_in_order(events, await journaled(settings))


def _sample(runtime: ServiceRuntime, name: str) -> float:
    return runtime.registry.get_sample_value(name) or 0.0


async def test_garbage_on_the_stream_is_set_aside_and_the_service_goes_on(
    settings: AuditSettings, nats_server: EmbeddedNats, make_events: EventFactory
) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "intruder")
    js = nc.jetstream()
    await js.publish(audit_subject("registry"), b"\xff\xfenot a protobuf")
    forged = make_events(1, service="ingest")[0]  # claims to be ingest, published as registry
    await js.publish(audit_subject("registry"), forged.SerializeToString())
    await nc.close()
    valid = make_events(5)
    await publish_all(nats_server.url, valid)
    async with running_service("audit", settings, serve) as runtime:
        await wait_until(lambda: _at_least(settings, 5))
        await wait_until(lambda: _rejected(runtime, 2))
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{runtime.http_url}/readyz")).status_code == 200
    store = reader(settings)
    try:
        assert await store.rejected_count() == 2
        assert await store.tree_size() == 5
    finally:
        await store.close()


async def _rejected(runtime: ServiceRuntime, count: int) -> bool:
    return _sample(runtime, "vigie_audit_journal_rejected_messages_total") >= count


async def test_api_reads_are_journaled_through_the_stream(
    settings: AuditSettings, nats_server: EmbeddedNats, make_events: EventFactory
) -> None:
    await publish_all(nats_server.url, make_events(3))
    token = LocalTokenIssuer.from_settings(settings.auth).mint("dpo-1", ["audit:read"])
    async with running_service("audit", settings, serve) as runtime, httpx.AsyncClient() as client:
        await wait_until(lambda: _at_least(settings, 3))
        url = f"{runtime.http_url}/api/audit/v1/entries"
        assert (await client.get(url)).status_code == 401
        assert await offline_docs_problems(client, f"{runtime.http_url}/api/audit/v1") == []
        response = await client.get(
            url, params={"motive": "yearly review"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
        assert len(response.json()["entries"]) == 3
        await wait_until(lambda: _at_least(settings, 4))
    (read,) = (await journaled(settings))[3:]
    assert action_name(read.action) == "audit_read"
    assert (read.service, read.actor, read.motive) == ("audit", "dpo-1", "yearly review")


@pytest.mark.provision(False)
async def test_export_is_journaled_first_and_verifies_offline(
    settings: AuditSettings, nats_server: EmbeddedNats, make_events: EventFactory, tmp_path: Path
) -> None:
    from vigie_audit.commands import main

    config = tmp_path / "audit.toml"
    config.write_text(
        f'database_url = "{settings.database_url.get_secret_value()}"\n'
        f'[nats]\nurl = "{nats_server.url}"\n'
        "[audit]\nconfirm_timeout_s = 1.0\ndrain_timeout_s = 0.2\n"
    )
    assert await asyncio.to_thread(main, ["migrate", "--config", str(config)]) == 0
    store = reader(settings)
    try:
        await store.append(make_events(12))
    finally:
        await store.close()
    out = tmp_path / "journal.jsonl"
    export = [
        "export",
        "--config",
        str(config),
        "--out",
        str(out),
        "--actor",
        "dpo-1",
        "--motive",
        "court order 42",
    ]
    # No AUDIT stream yet: the export cannot be journaled, so nothing leaves.
    with pytest.raises(SystemExit, match="nothing exported"):
        await asyncio.to_thread(main, export)
    assert not out.exists()

    nats_server.provision()
    assert await asyncio.to_thread(main, export) == 0
    assert await asyncio.to_thread(main, ["verify", "--export", str(out)]) == 0
    nc = await connect(NatsSettings(url=nats_server.url), "check")
    subscription = await nc.jetstream().pull_subscribe("vigie.audit.*", durable="check", stream="AUDIT")
    (message,) = await subscription.fetch(1, timeout=2)
    recorded = AuditEvent.FromString(message.data)
    await nc.close()
    assert (action_name(recorded.action), recorded.actor, recorded.motive) == (
        "audit_export",
        "dpo-1",
        "court order 42",
    )
    assert [(r.kind, r.id) for r in recorded.records] == [("audit_entries", "0-11")]


async def test_a_deleted_consumer_is_recreated_and_nothing_is_lost(
    settings: AuditSettings, nats_server: EmbeddedNats, make_events: EventFactory
) -> None:
    events = make_events(20)
    await publish_all(nats_server.url, events[:10])
    async with running_service("audit", settings, serve):
        await wait_until(lambda: _at_least(settings, 10))
        nc = await connect(NatsSettings(url=nats_server.url), "operator")
        await nc.jetstream().delete_consumer("AUDIT", "audit")  # an operator's mistake
        await nc.close()
        await publish_all(nats_server.url, events[10:])
        await wait_until(lambda: _at_least(settings, 20))
    assert_complete_and_in_order(events, await journaled(settings))


async def test_the_journal_works_within_its_nats_permissions(
    tmp_path: Path, settings: AuditSettings, make_events: EventFactory
) -> None:
    # The platform's secured broker: the audit user may own and read AUDIT only; registry may publish
    # only on vigie.audit.registry.
    from vigie_core.audit import AuditAction, AuditPublisher, JetStreamAuditSink

    with EmbeddedNats(secured=True) as secured:

        def as_user(service: str) -> NatsSettings:
            credentials = secured.credentials(service)
            return NatsSettings(
                url=secured.url, user=credentials.user, password=SecretStr(credentials.password)
            )

        journal = settings.model_copy(update={"nats": as_user("audit")})
        async with running_service("audit", journal, serve) as runtime, httpx.AsyncClient() as client:
            registry = await connect(as_user("registry"), "registry")
            publisher = AuditPublisher("registry", JetStreamAuditSink(registry.jetstream(), 1.0))
            await publisher.start()
            for i in range(5):
                await publisher.record(
                    AuditAction.AUDIT_ACTION_CONFIG_UPDATE, actor="op-1", motive=f"zone {i}"
                )
            # Another service's subject: the broker refuses it, nothing reaches the journal.
            forged = make_events(1, service="ingest")[0]
            with contextlib.suppress(Exception):
                await registry.jetstream().publish(
                    audit_subject("ingest"), forged.SerializeToString(), timeout=0.5
                )
            await publisher.close()
            await registry.drain()
            await wait_until(lambda: _at_least(journal, 5))
            token = LocalTokenIssuer.from_settings(journal.auth).mint("dpo-1", ["audit:read"])
            headers = {"Authorization": f"Bearer {token}"}
            assert (
                await client.get(f"{runtime.http_url}/api/audit/v1/entries", headers=headers)
            ).status_code == 200
            await wait_until(lambda: _at_least(journal, 6))  # the read, journaled as the audit user
    stored = await journaled(journal)
    assert [e.service for e in stored] == ["registry"] * 5 + ["audit"]
