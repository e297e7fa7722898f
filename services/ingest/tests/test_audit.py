"""What ingest records in the audit journal, read back from the AUDIT stream of a secured nats-server
(ingest connects as its own NATS user, with the platform's permissions)."""

import asyncio
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from vigie_core.audit import AuditAction, AuditEvent, AuditOutcome, settings_digest
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_ingest.service import serve
from vigie_ingest.settings import IngestSettings

pytestmark = pytest.mark.integration

CAMERA_PASSWORD = "s3cret-rtsp"


async def audit_events(
    js: JetStreamContext, count: int, within_s: float = 10
) -> list[tuple[AuditEvent, bytes]]:
    """The first ``count`` events on the AUDIT stream (read as the audit service would), with their bytes."""
    subscription = await js.pull_subscribe("vigie.audit.>", durable="test-reader", stream="AUDIT")
    found: list[tuple[AuditEvent, bytes]] = []
    deadline = asyncio.get_running_loop().time() + within_s
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        try:
            messages = await subscription.fetch(count - len(found), timeout=0.5)
        except TimeoutError:
            continue
        for message in messages:
            found.append((AuditEvent.FromString(message.data), message.data))
            await message.ack()
    return found


async def test_ingest_records_its_configuration_without_credentials(
    secured_nats_server: EmbeddedNats, videos, tmp_path: Path
) -> None:
    server = secured_nats_server
    # The journal's reader: the audit service, in its account.
    auditor = await server.client("audit")
    js = auditor.jetstream()
    credentials = server.credentials("ingest")
    video = videos.write("short.mp4", frames=10)
    settings = IngestSettings(
        nats={"url": server.url, "user": credentials.user, "password": credentials.password},
        cameras=[
            {"id": "parvis", "url": str(video), "realtime": False},
            # A live camera with a password in its URL; nothing answers there.
            {"id": "gare-nord", "url": f"rtsp://admin:{CAMERA_PASSWORD}@127.0.0.1:9/stream1"},
        ],
        live={"open_timeout_s": 0.5, "backoff_initial_s": 0.5, "backoff_max_s": 1},
        policy={"enabled": False},  # no registry here: static configuration only
    )

    async with running_service("ingest", settings, serve):
        events = await audit_events(js, 1)
    assert len(events) == 1, "one event at start-up"
    event, wire = events[0]
    assert event.action == AuditAction.AUDIT_ACTION_CONFIG_UPDATE
    assert event.outcome == AuditOutcome.AUDIT_OUTCOME_SUCCESS
    assert (event.service, event.actor) == ("ingest", "service:ingest")
    assert list(event.camera_ids) == ["parvis", "gare-nord"]
    digest = settings_digest(settings)
    assert event.details["config_sha256"] == digest
    assert event.details["change"] == "service_started"
    assert (event.details["cameras"], event.details["frames_partitions"]) == ("2", "1")
    assert [(r.kind, r.id) for r in event.records] == [("service_configuration", f"ingest:{digest[:16]}")]
    # Neither credential nor camera address reaches the journal.
    for secret in (CAMERA_PASSWORD, credentials.password, "rtsp://", str(video)):
        assert secret.encode() not in wire
    # The digest would not change with the camera's password alone, and does with its address.
    other_password = settings.model_copy(
        update={
            "cameras": [
                settings.cameras[0],
                settings.cameras[1].model_copy(update={"url": "rtsp://admin:other@127.0.0.1:9/stream1"}),
            ]
        }
    )
    other_camera = settings.model_copy(
        update={
            "cameras": [
                settings.cameras[0],
                settings.cameras[1].model_copy(update={"url": f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.9/s"}),
            ]
        }
    )
    assert settings_digest(other_password) == digest
    assert settings_digest(other_camera) != digest
    await auditor.close()
