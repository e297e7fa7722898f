"""A city declares a camera once, in the registry, and a running ingest reads it: the real registry service
and the real ingest service on a secured nats-server (each as its own NATS user), the camera declared
through the registry's admin API with a file source. Its frames reach FRAMES; a new source restarts it; a
garbage entry and an entry sealed with another key do not stop ingest; retiring the camera stops it; the
changes are audited without a URL."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditEvent, AuditPublishSettings, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.permissions import SOURCES_BUCKET
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import ServiceConnections, following, running_service
from vigie_ingest.registry_sources import SealedUrlOpener, SourcesWatcher, decode_source, in_shard
from vigie_ingest.service import serve as serve_ingest
from vigie_ingest.settings import IngestSettings, RegistrySourcesSettings
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.sources_pb2 import CameraSource
from vigie_registry.service import API_PREFIX
from vigie_registry.service import serve as serve_registry
from vigie_registry.settings import RegistrySettings

pytestmark = pytest.mark.integration

KEY = Fernet.generate_key().decode()
AUTH_KEY = base64.b64encode(bytes(range(32))).decode()
SECRET = "s3cret-in-the-query"


def declaration(url: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Parvis de la gare",
        "location": {"address": "Place de la gare, Lyon", "latitude": 45.76, "longitude": 4.83},
        "source": {"url": url},
        "purpose": "pedestrian_flow_statistics",
        "legal": {"basis": "public_task", "act": "Délibération 2026-12", "dpia_reference": "DPIA-2026-004"},
        "controller": {"name": "Ville de Lyon", "email": "mobilite@ville.example"},
        "dpo": {"name": "Délégué à la protection des données", "email": "dpo@ville.example"},
        "status": "active",
    }
    return body | changes


@dataclass
class Published:
    frames: list[Frame] = field(default_factory=list)

    def of(self, camera_id: str) -> list[Frame]:
        return [f for f in self.frames if f.camera_id == camera_id]


def registry_settings(server: EmbeddedNats, tmp_path: Path) -> RegistrySettings:
    credentials = server.credentials("registry")
    return RegistrySettings.model_validate(
        {
            "nats": {"url": server.url, "user": credentials.user, "password": credentials.password},
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3",
            "source_key": KEY,
            "receipt_key": "r" * 32,
            "auth": {"local_key": AUTH_KEY},
            "audit": {"drain_timeout_s": 2},
            "policy": {"reconcile_interval_s": 0.5},
        }
    )


def ingest_settings(server: EmbeddedNats) -> IngestSettings:
    credentials = server.credentials("ingest")
    return IngestSettings.model_validate(
        {
            "nats": {"url": server.url, "user": credentials.user, "password": credentials.password},
            "policy": {"startup_wait_s": 5},
            "sources": {"enabled": True, "source_key": KEY, "loop": True, "startup_wait_s": 5},
            "audit": AuditPublishSettings(drain_timeout_s=2).model_dump(),
        }
    )


async def until(condition: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def ingest_audit(as_service: ServiceConnections) -> list[AuditEvent]:
    """Ingest's audit events, as the journal reads them."""
    js = await as_service.js("audit")
    subscription = await js.pull_subscribe("vigie.audit.ingest", stream="AUDIT")
    events = []
    try:
        while True:
            for message in await subscription.fetch(100, timeout=0.5):
                events.append(AuditEvent.FromString(message.data))
    except TimeoutError:  # nats-py raises its own (a subclass) or, for a batch, asyncio's
        pass
    return events


async def test_a_camera_declared_in_the_registry_is_read_by_a_running_ingest(
    secured_nats_server: EmbeddedNats,
    as_service: ServiceConnections,
    videos,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = secured_nats_server
    first = videos.write("first.mp4", frames=25)
    second = videos.write("second.mp4", frames=25, width=128)
    published = Published()
    issuer = LocalTokenIssuer.from_settings(AuthSettings(local_key=AUTH_KEY))  # type: ignore[arg-type]
    headers = {
        "Authorization": f"Bearer {issuer.mint('operator-1', ['registry:admin'])}",
        "X-Vigie-Motive": "integration test",
    }
    async with (
        # The frames, as inference fetches them.
        following(await as_service.js("inference"), "FRAMES", "vigie.frames.>", Frame.FromString) as frames,
        running_service("registry", registry_settings(server, tmp_path), serve_registry) as registry,
        running_service("ingest", ingest_settings(server), serve_ingest) as ingest,
        httpx.AsyncClient(base_url=f"{registry.http_url}{API_PREFIX}", headers=headers, timeout=10) as http,
    ):
        published.frames = frames
        metric = ingest.registry.get_sample_value
        await until(lambda: metric("vigie_ingest_sources_synced") == 1)
        # The buckets are provisioned before either starts: wait for the registry's API too.
        for _ in range(200):
            if (await http.get(f"{registry.http_url}/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)

        # Declared once, in the registry: ingest reads it, frames reach FRAMES.
        url = f"{first.as_uri()}?token={SECRET}"
        created = await http.post("/cameras", json={"id": "parvis", **declaration(url)})
        assert created.status_code == 201, created.text
        await until(lambda: len(published.of("parvis")) >= 3)
        assert {f.source_width for f in published.of("parvis")} == {160}
        first_run = published.of("parvis")[0].run_id

        # A garbage entry and one sealed with another key: refused by name, ingest goes on.
        # Written as the registry does, into the bucket in ingest's account.
        kv = await (await as_service.js("registry", f"KV_{SOURCES_BUCKET}")).key_value(SOURCES_BUCKET)
        await kv.put("garbage", b"\xff\x00 not a message")
        foreign = CameraSource(schema_version=1, camera_id="foreign", version=1)
        foreign.sealed_url = Fernet(Fernet.generate_key()).encrypt(first.as_uri().encode())
        await kv.put("foreign", foreign.SerializeToString())
        await until(lambda: metric("vigie_ingest_sources_refused_total", {"reason": "cannot_open"}) == 1)
        assert metric("vigie_ingest_sources_refused_total", {"reason": "not_a_source"}) == 1
        assert metric("vigie_ingest_sources_unreadable_entries") == 2
        assert "camera garbage: its source in vigie-sources cannot be read (not_a_source)" in caplog.text
        count = len(published.of("parvis"))
        await until(lambda: len(published.of("parvis")) > count + 2)
        assert not published.of("garbage")
        assert not published.of("foreign")

        # A new source: the camera is read again from it (a new run, the other picture size).
        replaced = await http.put("/cameras/parvis", json=declaration(second.as_uri()))
        assert replaced.status_code == 200, replaced.text
        await until(lambda: any(f.source_width == 128 for f in published.of("parvis")))
        assert published.of("parvis")[-1].run_id != first_run
        assert metric("vigie_ingest_registry_camera_changes_total", {"change": "replaced"}) == 1

        # Retired: no longer read.
        retired = await http.post("/cameras/parvis/status", json={"status": "retired"})
        assert retired.status_code == 200, retired.text
        await until(lambda: metric("vigie_ingest_registry_cameras") == 0)
        await asyncio.sleep(0.5)
        count = len(published.of("parvis"))
        await asyncio.sleep(0.6)
        assert len(published.of("parvis")) == count, "a retired camera publishes nothing"
        async with httpx.AsyncClient() as probe:
            assert (await probe.get(f"{ingest.http_url}/readyz")).status_code == 200
            metrics = (await probe.get(f"{ingest.http_url}/metrics")).text
            assert 'vigie_ingest_camera_state{camera="parvis"' not in metrics
            assert 'vigie_ingest_camera_analysed{camera="parvis"' not in metrics

    events = [e for e in await ingest_audit(as_service) if e.details.get("change") == "cameras_read"]
    assert [next(k for k in ("started", "replaced", "stopped") if k in e.details) for e in events] == [
        "started",
        "replaced",
        "stopped",
    ]
    assert all(action_name(e.action) == "config_update" and list(e.camera_ids) == ["parvis"] for e in events)
    text = "".join(str(e) for e in events) + caplog.text
    for secret in (SECRET, str(first), str(second)):
        assert secret not in text


async def test_each_shard_reports_only_its_own_unreadable_entries(nats_server: EmbeddedNats) -> None:
    """Two garbage entries, one in each of two shards: each shard's watcher counts and logs only its own, so
    one bad entry raises one alert (``VigieCameraSourceUnreadable``), not one per replica."""
    cameras = [f"camera-{i}" for i in range(20)]
    first = next(c for c in cameras if in_shard(c, 0, 2))
    second = next(c for c in cameras if in_shard(c, 1, 2))
    settings = RegistrySourcesSettings(enabled=True, source_key=KEY)
    client = await nats.connect(nats_server.url)
    registries = [CollectorRegistry(), CollectorRegistry()]
    watchers = [
        SourcesWatcher(
            client,
            lambda key, value: decode_source(key, value, SealedUrlOpener(KEY), settings),
            registry=registries[shard],
            mine=lambda key, shard=shard: in_shard(key, shard, 2),  # type: ignore[misc]
        )
        for shard in (0, 1)
    ]
    try:
        kv = await client.jetstream().key_value(SOURCES_BUCKET)
        for camera in (first, second):
            await kv.put(camera, b"\xff\x00 not a message")
        for watcher in watchers:
            await watcher.start()
            await watcher.wait_until(lambda w=watcher: len(w.entries() or {}) == 2, 10)  # type: ignore[misc]
        for registry in registries:
            assert registry.get_sample_value("vigie_ingest_sources_unreadable_entries") == 1
            refused = {"reason": "not_a_source"}
            assert registry.get_sample_value("vigie_ingest_sources_refused_total", refused) == 1
    finally:
        for watcher in watchers:
            await watcher.close()
        await client.close()
