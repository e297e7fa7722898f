"""The sources bucket (vigie-sources) kept by the API in process: sealed URLs for ingest, written when the
source or the status that decides whether ingest reads the camera changes, removed for drafts, retired and
deleted cameras; never a URL in the clear, and nothing at all without a source_key."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry

from vigie_core.sources import SOURCE_SCHEMA_VERSION
from vigie_proto.v1.sources_pb2 import CameraSource
from vigie_registry.publication import MemoryKeyValueBucket
from vigie_registry.storage.store import RegistryStore, SourceCipher

from .conftest import CIPHER_KEY, Api, declaration, publisher_of

URL = declaration()["source"]["url"]
SECRET = "s3cret-pass"
OTHER_URL = "rtsp://viewer:n3w-pass@10.0.0.13:554/main"


def opened(api: Api, camera_id: str = "north-gate") -> tuple[CameraSource, str]:
    value, _ = api.sources.values[camera_id]
    source = CameraSource.FromString(value)
    return source, Fernet(CIPHER_KEY.encode()).decrypt(source.sealed_url).decode()


async def create(api: Api, camera_id: str = "north-gate", status: str = "active", **changes: Any) -> int:
    body = {"id": camera_id, **declaration(**changes), "status": status}
    response = await api.client.post("/cameras", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    assert response.json()["policy_published"] is True
    version: int = response.json()["version"]
    return version


async def set_status(api: Api, status: str, camera_id: str = "north-gate") -> None:
    response = await api.client.post(
        f"/cameras/{camera_id}/status", json={"status": status}, headers=api.admin
    )
    assert response.status_code == 200, response.text


async def test_an_active_camera_has_its_url_sealed_in_the_bucket(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    version = await create(api)
    value, _ = api.sources.values["north-gate"]
    assert SECRET.encode() not in value
    assert b"abc123" not in value
    assert b"10.0.0.12" not in value  # the whole URL is sealed, not only its password
    source, url = opened(api)
    assert (source.schema_version, source.camera_id, source.version) == (
        SOURCE_SCHEMA_VERSION,
        "north-gate",
        version,
    )
    assert source.issued_at.seconds > 0
    assert url == URL
    assert SECRET not in caplog.text
    assert "abc123" not in caplog.text
    assert api.metric("vigie_registry_source_publications_total", {"outcome": "written"}) == 1


async def test_the_entry_changes_with_the_source_and_the_status_not_with_every_version(api: Api) -> None:
    await create(api)
    writes = api.sources.writes
    # An objection: a new policy version, the same source: ingest is not asked to reconnect.
    objection = await api.client.post("/public/cameras/north-gate/objections")
    assert objection.status_code == 201
    assert objection.json()["applied"] is True
    assert api.sources.writes == writes
    # Another name, the same source (PUT without a source keeps the stored one).
    renamed = {k: v for k, v in declaration(name="North gate (new)").items() if k != "source"}
    response = await api.client.put(
        "/cameras/north-gate", json={**renamed, "status": "active"}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    assert api.sources.writes == writes
    # A new source: rewritten with the new URL and the new version.
    response = await api.client.put(
        "/cameras/north-gate",
        json={**declaration(source={"url": OTHER_URL}), "status": "active"},
        headers=api.admin,
    )
    assert response.status_code == 200, response.text
    source, url = opened(api)
    assert url == OTHER_URL
    assert source.version == response.json()["version"]
    # Paused by the administrator: still read (connected, not decoded: the policy says so).
    await set_status(api, "paused")
    assert opened(api)[1] == OTHER_URL
    # Retired: no longer read at all.
    await set_status(api, "retired")
    assert "north-gate" not in api.sources.values
    assert api.metric("vigie_registry_source_publications_total", {"outcome": "withdrawn"}) == 1


async def test_a_draft_is_not_read_until_it_is_activated_and_a_deleted_camera_is_withdrawn(api: Api) -> None:
    await create(api, status="draft")
    assert "north-gate" not in api.sources.values
    assert "north-gate" in api.bucket.values  # its policy is published (status draft)
    await set_status(api, "active")
    assert opened(api)[1] == URL
    response = await api.client.delete("/cameras/north-gate", headers=api.admin)
    assert response.status_code == 204
    assert "north-gate" not in api.sources.values
    assert "north-gate" not in api.bucket.values


async def test_a_failed_source_publication_is_retried_and_does_not_hold_back_the_policy(api: Api) -> None:
    api.sources.fail = True
    await api.client.post(
        "/cameras", json={"id": "north-gate", **declaration(), "status": "active"}, headers=api.admin
    )
    camera = (await api.client.get("/cameras/north-gate", headers=api.admin)).json()
    assert camera["policy_published"] is False
    assert "north-gate" in api.bucket.values  # the policy went first
    assert api.metric("vigie_registry_source_publications_total", {"outcome": "failed"}) == 1
    # An objection is applied as soon as the policy holds it, whatever the sources bucket does.
    objection = await api.client.post("/public/cameras/north-gate/objections")
    assert objection.json()["applied"] is True
    assert (await api.publisher.reconcile()).failed == 1
    assert api.publisher.problem() == "1 camera(s) not yet in every bucket (policy, sources)"
    api.sources.fail = False
    assert (await api.publisher.reconcile()).published == 1
    assert api.publisher.problem() is None
    assert opened(api)[1] == URL


async def test_an_entry_sealed_with_another_key_or_unreadable_is_replaced(api: Api) -> None:
    await create(api)
    foreign = CameraSource(schema_version=1, camera_id="north-gate", version=10**6)
    foreign.sealed_url = Fernet(Fernet.generate_key()).encrypt(b"rtsp://elsewhere/")
    value, revision = api.sources.values["north-gate"]
    api.sources.values["north-gate"] = (foreign.SerializeToString(), revision)
    camera = await api.store.camera("north-gate")
    assert camera is not None
    assert (await api.publisher.publish(camera)).complete
    assert opened(api)[1] == URL
    api.sources.values["north-gate"] = (b"\xff garbage", revision + 10)
    assert (await api.publisher.publish(camera)).complete
    assert opened(api)[1] == URL
    # A newer entry that this registry can open is left alone (another replica wrote it).
    newer = CameraSource(schema_version=1, camera_id="north-gate", version=camera.version + 1)
    newer.sealed_url = SourceCipher(CIPHER_KEY).token(OTHER_URL)
    api.sources.values["north-gate"] = (newer.SerializeToString(), revision + 20)
    assert (await api.publisher.publish(camera)).complete
    assert opened(api)[1] == OTHER_URL
    # At start, keys of cameras the registry does not have are removed.
    api.sources.values["ghost"] = (value, 1)
    await api.publisher.reconcile(full=True)
    assert "ghost" not in api.sources.values


async def test_without_a_source_key_nothing_is_distributed(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await create(api)
    await create(api, "south-gate")
    await create(api, "draft-cam", status="draft")
    # The same database, read by a registry restarted without its key: the stale entries are removed.
    sources = api.sources
    registry = CollectorRegistry()
    publisher = publisher_of(api.store, MemoryKeyValueBucket(), sources, registry, api.clock, SourceCipher())
    with caplog.at_level(logging.WARNING, logger="vigie.registry.sources"):
        result = await publisher.reconcile(full=True)
        await publisher.reconcile(full=True)
    assert result.failed == 0
    assert sources.values == {}
    assert publisher.problem() is None  # refusing to distribute is not a failure to retry
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # once per camera, not at every reconciliation
    assert all("no source_key is configured" in w and "never sent unsealed" in w for w in warnings)
    assert registry.get_sample_value("vigie_registry_sources_undistributed", {"reason": "no_source_key"}) == 2


async def test_a_stored_source_the_key_cannot_open_is_not_distributed(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await create(api)
    other_key = Fernet.generate_key().decode()
    store = RegistryStore(api.store.engine, SourceCipher(other_key))
    registry = CollectorRegistry()
    publisher = publisher_of(
        store, MemoryKeyValueBucket(), api.sources, registry, api.clock, SourceCipher(other_key)
    )
    with caplog.at_level(logging.ERROR, logger="vigie.registry.sources"):
        result = await publisher.reconcile(full=True)
    assert result.failed == 0
    assert api.sources.values == {}
    assert "camera north-gate: its source is not distributed to ingest" in caplog.text
    assert "does not decrypt" in caplog.text
    assert (
        registry.get_sample_value("vigie_registry_sources_undistributed", {"reason": "unreadable_source"})
        == 1
    )
