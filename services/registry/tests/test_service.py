"""The service with a real nats-server and its per-service users, on SQLite and PostgreSQL: at start the
bucket is made equal to the database; another service's user reads every change; an objection pauses
the camera for that service within a second; an ended authorisation switches a camera off."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from vigie_core.audit import AuditPublishSettings
from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.messaging import connect
from vigie_core.permissions import POLICY_STREAM, api_prefix
from vigie_core.policy import POLICY_BUCKET, PolicyWatcher, decode_policy
from vigie_core.settings import NatsSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import ServiceConnections, offline_docs_problems, running_service
from vigie_proto.v1.audit_pb2 import AuditAction, AuditEvent
from vigie_registry.declaration import CameraDeclaration, SourceDeclaration
from vigie_registry.service import API_PREFIX, serve
from vigie_registry.settings import PolicyPublishSettings, RegistrySettings
from vigie_registry.storage.store import RegistryStore

from .conftest import Database, declaration, security_declaration

pytestmark = pytest.mark.integration

# A test-only Ed25519 key (32 bytes, base64): tokens minted with it are accepted by the service.
KEY = base64.b64encode(bytes(range(32))).decode()


def make_settings(server: EmbeddedNats, database: Database, **changes: Any) -> RegistrySettings:
    credentials = server.credentials("registry")
    return RegistrySettings(
        nats=NatsSettings(url=server.url, user=credentials.user, password=credentials.password),  # type: ignore[arg-type]
        database_url=database.url,  # type: ignore[arg-type]
        database_schema=database.schema,
        receipt_key="r" * 32,  # type: ignore[arg-type]
        auth=AuthSettings(local_key=KEY),  # type: ignore[arg-type]
        audit=AuditPublishSettings(drain_timeout_s=2, confirm_timeout_s=5),
        policy=PolicyPublishSettings(reconcile_interval_s=0.2),
        authorisation_check_interval_s=0.2,
        **changes,
    )


async def client_of(server: EmbeddedNats, service: str) -> Client:
    credentials = server.credentials(service)
    settings = NatsSettings(url=server.url, user=credentials.user, password=credentials.password)  # type: ignore[arg-type]
    return await connect(settings, f"test-{service}")


async def audit_events(as_service: ServiceConnections) -> list[AuditEvent]:
    """The registry's audit events, as the journal reads them."""
    js = await as_service.js("audit")
    subscription = await js.pull_subscribe("vigie.audit.registry", durable="test-reader", stream="AUDIT")
    events = []
    try:
        while True:
            batch = await subscription.fetch(100, timeout=0.5)
            for message in batch:
                events.append(AuditEvent.FromString(message.data))
                await message.ack()
    except TimeoutError:  # nats-py raises its own (a subclass) or, for a batch, asyncio's
        pass
    finally:
        await subscription.unsubscribe()
    return events


def parsed(body: dict[str, Any]) -> CameraDeclaration:
    return CameraDeclaration.model_validate({k: v for k, v in body.items() if k != "source"})


async def test_the_bucket_follows_the_registry_and_an_objection_pauses_within_a_second(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, database: Database
) -> None:
    # Before the registry starts: a camera in its database never published, and a stray key in the bucket.
    store = await RegistryStore.open(database.url, schema_name=database.schema)
    source = SourceDeclaration.model_validate(declaration()["source"])
    now = int(time.time())
    await store.create("north-gate", parsed(declaration()), "active", source, now=now)
    await store.close()
    kv = await (await as_service.js("registry")).key_value(POLICY_BUCKET)  # the provisioner's
    await kv.put("ghost", b"stale")

    inference = await client_of(secured_nats_server, "inference")
    watcher = PolicyWatcher(inference, api=api_prefix("inference", POLICY_STREAM), retry_s=0.05, check_s=0.05)
    await watcher.start()
    issuer = LocalTokenIssuer.from_settings(AuthSettings(local_key=KEY))  # type: ignore[arg-type]
    admin_headers = {
        "Authorization": f"Bearer {issuer.mint('operator-1', ['registry:admin'])}",
        "X-Vigie-Motive": "integration test",
    }
    try:
        async with running_service(
            "registry", make_settings(secured_nats_server, database), serve
        ) as runtime:
            api = f"{runtime.http_url}{API_PREFIX}"
            async with httpx.AsyncClient(timeout=10) as http:
                for _ in range(100):
                    if (await http.get(f"{runtime.http_url}/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                assert (await http.get(f"{runtime.http_url}/readyz")).status_code == 200
                assert await offline_docs_problems(http, api) == []

                # At start, the bucket became equal to the database.
                await watcher.wait_until(lambda: watcher.decision("north-gate").analyse, 10)
                assert watcher.cameras() == ["north-gate"]

                # An objection, measured from the request to the other service's watcher.
                started = time.monotonic()
                response = await http.post(f"{api}/public/cameras/north-gate/objections")
                await watcher.wait_until(lambda: not watcher.decision("north-gate").analyse, 5)
                elapsed = time.monotonic() - started
                assert response.status_code == 201, response.text
                assert response.json()["applied"] is True
                assert elapsed < 1.0
                assert "objection" in watcher.decision("north-gate").reason
                receipt = response.json()["receipt"]
                verdict = await http.post(f"{api}/public/receipts/verify", json=receipt)
                assert verdict.json() == {"valid": True, "recorded": True}

                # A camera declared over the API reaches the other service; deleted, it is gone.
                body = {"id": "south-gate", **declaration(), "status": "active"}
                created = await http.post(f"{api}/cameras", json=body, headers=admin_headers)
                assert created.status_code == 201, created.text
                await watcher.wait_until(lambda: watcher.decision("south-gate").analyse, 5)
                policy = watcher.policy("south-gate")
                assert policy is not None
                assert policy.version == created.json()["version"]
                deleted = await http.delete(f"{api}/cameras/south-gate", headers=admin_headers)
                assert deleted.status_code == 204
                await watcher.wait_until(lambda: "south-gate" not in watcher.cameras(), 5)

                # An authorisation ending: the registry switches the camera off by itself.
                until = datetime.now(UTC) + timedelta(seconds=1.5)
                events = security_declaration()
                events["security_events"] = {
                    **events["security_events"],
                    "authorised_from": (until - timedelta(days=1)).isoformat(),
                    "authorised_until": until.isoformat(),
                }
                body = {"id": "station", **events, "status": "active"}
                created = await http.post(f"{api}/cameras", json=body, headers=admin_headers)
                assert created.status_code == 201, created.text
                await watcher.wait_until(lambda: watcher.decision("station").analyse, 5)
                await watcher.wait_until(lambda: not watcher.decision("station").analyse, 5)
                for _ in range(100):
                    camera = (await http.get(f"{api}/cameras/station", headers=admin_headers)).json()
                    if camera["status"] == "paused":
                        break
                    await asyncio.sleep(0.05)
                assert (camera["status"], camera["status_reason"]) == ("paused", "authorisation_ended")

                metrics = (await http.get(f"{runtime.http_url}/metrics")).text
                assert 'vigie_registry_objections_total{outcome="paused"} 1.0' in metrics
                assert "ghost" not in watcher.cameras()
        # Stopped: every audit event reached the AUDIT stream, none with anything about the citizen.
        events = await audit_events(as_service)
        kinds = [e.action for e in events]
        assert AuditAction.AUDIT_ACTION_OBJECTION_HONOURED in kinds
        assert kinds.count(AuditAction.AUDIT_ACTION_CONFIG_CREATE) == 2
        assert AuditAction.AUDIT_ACTION_CONFIG_DELETE in kinds
        assert any(
            e.action == AuditAction.AUDIT_ACTION_POLICY_CHANGE and e.actor == "service:registry"
            for e in events
        )
        [objection] = [e for e in events if e.action == AuditAction.AUDIT_ACTION_OBJECTION_HONOURED]
        assert objection.actor == "public:anonymous"
        assert "127.0.0.1" not in str(objection)
        value = (await kv.get("north-gate")).value
        assert value is not None
        assert decode_policy("north-gate", value).HasField("paused_until")
    finally:
        await watcher.close()
        await inference.close()
