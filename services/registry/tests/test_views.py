"""Scene views through the API, with a real nats-server holding the stream VIEWS (SQLite and PostgreSQL): the
request in the policy and the journal, the answer inference publishes read back, anything else ignored and
counted, the limits; and the service on the platform's secured server, inference publishing as itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditAction, AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_core.policy import decode_policy
from vigie_core.streams import ViewsStream, views_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import ServiceConnections, running_service
from vigie_proto.v1.audit_pb2 import AuditEvent
from vigie_proto.v1.policy_pb2 import CameraPolicy
from vigie_proto.v1.views_pb2 import SceneViewImage, SceneViewResult
from vigie_registry.api.app import registry_app
from vigie_registry.camera import SceneViewRequest, timestamp_of
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ReceiptSigner
from vigie_registry.publication import MemoryKeyValueBucket
from vigie_registry.service import API_PREFIX, serve
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore
from vigie_registry.views import NatsViewReader, PublishedView, judge_view

from .conftest import QUICK_AUDIT, Clock, Database, declaration, publisher_of

# A JPEG as inference sends one (what matters: the bytes come back as they were published).
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(2048) + b"\xff\xd9"
MOTIVE = "drawing the counting line of the north gate"


def image_result(camera_id: str, request_id: str, jpeg: bytes = JPEG) -> SceneViewResult:
    return SceneViewResult(
        schema_version=1,
        camera_id=camera_id,
        request_id=request_id,
        policy_version=3,
        built_at=timestamp_of(datetime(2026, 6, 1, 12, 2, tzinfo=UTC)),
        frames=120,
        sampled_seconds=60.0,
        image=SceneViewImage(jpeg=jpeg, width=1280, height=720),
    )


def refused_result(camera_id: str, request_id: str) -> SceneViewResult:
    return SceneViewResult(
        schema_version=1,
        camera_id=camera_id,
        request_id=request_id,
        frames=12,
        sampled_seconds=60.0,
        refused="a person was still found on the view: ask again at a quieter time",
    )


async def publish(js_client: Client, camera_id: str, result: SceneViewResult) -> None:
    """As inference does: on the camera's subject, deduplicated by request."""
    js = js_client.jetstream()
    await js.publish(
        views_subject(camera_id),
        result.SerializeToString(),
        headers={"Nats-Msg-Id": f"view-{result.request_id}-{result.WhichOneof('result')}"},
    )


@dataclass
class Views:
    client: httpx.AsyncClient
    nc: Client
    sink: MemoryAuditSink
    issuer: LocalTokenIssuer
    bucket: MemoryKeyValueBucket
    clock: Clock
    registry: CollectorRegistry

    def token(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint('operator-7', scopes)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("registry:admin") | {"X-Vigie-Motive": "checking the view"}

    async def declare(self, camera_id: str = "north-gate", status: str = "active") -> None:
        body = {"id": camera_id, **declaration(), "status": status}
        response = await self.client.post("/cameras", json=body, headers=self.admin)
        assert response.status_code == 201, response.text

    async def ask(self, camera_id: str = "north-gate", **body: Any) -> httpx.Response:
        return await self.client.post(
            f"/cameras/{camera_id}/view-requests", json={"motive": MOTIVE, **body}, headers=self.admin
        )

    async def view(self, camera_id: str = "north-gate") -> dict[str, Any]:
        response = await self.client.get(f"/cameras/{camera_id}/view", headers=self.admin)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def policy(self, camera_id: str = "north-gate") -> CameraPolicy:
        value, _ = await self.bucket.read(camera_id)
        assert value is not None
        return decode_policy(camera_id, value)

    def rejected(self, reason: str) -> float:
        value = self.registry.get_sample_value("vigie_registry_views_rejected_total", {"reason": reason})
        return value or 0.0

    async def events(self, action: AuditAction.ValueType) -> list[AuditEvent]:
        for _ in range(100):
            found = [e for e in self.sink.events() if e.action == action]
            if found:
                return found
            await asyncio.sleep(0.02)
        return []


async def views_stream(js_client: Client) -> None:
    """VIEWS as the provisioner makes it (already there when the fixture's server provisions it)."""
    js = js_client.jetstream()
    try:
        await js.stream_info("VIEWS")
    except NotFoundError:
        await js.add_stream(ViewsStream().config())


@pytest.fixture
async def views(
    any_store: RegistryStore, nats_server: EmbeddedNats, database: Database
) -> AsyncIterator[Views]:
    del database
    nc = await nats_server.client("registry")
    await views_stream(nc)
    settings = RegistrySettings(objection={"rate_limit": "3/minute"})  # type: ignore[arg-type]
    clock = Clock()
    registry = CollectorRegistry()
    bucket = MemoryKeyValueBucket()
    publisher = publisher_of(any_store, bucket, MemoryKeyValueBucket(), registry, clock)
    issuer = LocalTokenIssuer.generate()
    sink = MemoryAuditSink()
    audit = AuditPublisher("registry", sink, settings=QUICK_AUDIT)
    await audit.start()
    app = registry_app(
        store=any_store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=settings,
        signer=ReceiptSigner(b"k" * 32),
        metrics=RegistryMetrics(registry),
        clock=clock,
        views=NatsViewReader(nc),
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            yield Views(client, nc, sink, issuer, bucket, clock, registry)
    finally:
        await audit.close()
        await nc.close()


async def test_a_request_is_in_the_policy_and_the_journal_with_its_motive(views: Views) -> None:
    await views.declare()
    never = await views.view()
    assert (never["state"], never["request_id"], never["image_url"]) == ("none", None, None)
    response = await views.ask(sample_seconds=30)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["state"] == "pending"
    assert accepted["sample_seconds"] == 30
    assert accepted["requested_at"] == "2026-06-01T12:00:00Z"
    assert accepted["answer_by"] == "2026-06-01T12:10:30Z"

    policy = await views.policy()
    assert policy.view_request.request_id == accepted["request_id"]
    assert policy.view_request.sample_seconds == 30
    assert policy.view_request.requested_at.ToSeconds() == int(views.clock())
    shown = (await views.client.get("/cameras/north-gate/policy", headers=views.admin)).json()
    assert shown["view_request"]["request_id"] == accepted["request_id"]

    [event] = await views.events(AuditAction.AUDIT_ACTION_POLICY_CHANGE)
    assert event.motive == MOTIVE
    assert event.actor == "operator-7"
    assert event.details["changed"] == "view_request"
    assert event.details["version"] == str(policy.version)
    assert ("view_request", accepted["request_id"]) in [(r.kind, r.id) for r in event.records]

    view = await views.view()
    assert (view["state"], view["request_id"], view["sample_seconds"]) == (
        "pending",
        accepted["request_id"],
        30,
    )
    assert view["image_url"] is None
    missing = await views.client.get("/cameras/north-gate/view.jpg", headers=views.admin)
    assert missing.status_code == 404
    assert views.registry.get_sample_value("vigie_registry_view_requests_total") == 1.0


async def test_the_answer_to_the_request_is_served_as_published(views: Views) -> None:
    await views.declare()
    request_id = (await views.ask()).json()["request_id"]
    await publish(views.nc, "north-gate", image_result("north-gate", request_id))

    view = await views.view()
    assert view["state"] == "ready"
    assert (view["width"], view["height"], view["frames"], view["sampled_seconds"]) == (1280, 720, 120, 60.0)
    assert view["built_at"] == "2026-06-01T12:02:00Z"
    assert view["image_url"] == "/cameras/north-gate/view.jpg"
    assert view["reason"] is None

    picture = await views.client.get(view["image_url"], headers=views.admin)
    assert picture.status_code == 200, picture.text
    assert picture.content == JPEG
    assert picture.headers["content-type"] == "image/jpeg"
    assert picture.headers["cache-control"] == "no-store"
    [read] = await views.events(AuditAction.AUDIT_ACTION_DATA_READ)
    assert read.motive == "checking the view"
    assert ("scene_view", request_id) in [(r.kind, r.id) for r in read.records]

    # Reading the picture is a read of the camera's data: it says why.
    token = views.token("registry:admin")
    unsaid = await views.client.get(view["image_url"], headers=token)
    assert unsaid.status_code == 422
    assert unsaid.json()["detail"][0]["loc"] == ["query", "motive"]


async def test_a_refused_view_says_why(views: Views) -> None:
    await views.declare()
    request_id = (await views.ask()).json()["request_id"]
    await publish(views.nc, "north-gate", refused_result("north-gate", request_id))
    view = await views.view()
    assert view["state"] == "refused"
    assert view["reason"] == "a person was still found on the view: ask again at a quieter time"
    assert view["image_url"] is None
    assert (await views.client.get("/cameras/north-gate/view.jpg", headers=views.admin)).status_code == 404


async def test_anything_but_the_answer_to_the_current_request_is_ignored_and_counted(
    views: Views, caplog: pytest.LogCaptureFixture
) -> None:
    await views.declare()
    request_id = (await views.ask()).json()["request_id"]
    await publish(views.nc, "north-gate", image_result("north-gate", "a-request-never-made"))
    for _ in range(2):  # read twice, counted once
        assert (await views.view())["state"] == "pending"
    assert views.rejected("not_requested") == 1.0
    assert "a scene view was ignored (not_requested)" in caplog.text
    assert "a-request-never-made" not in caplog.text
    assert (await views.client.get("/cameras/north-gate/view.jpg", headers=views.admin)).status_code == 404

    # A message naming another camera, on this camera's subject.
    await publish(views.nc, "north-gate", image_result("south-gate", request_id))
    assert (await views.view())["state"] == "pending"
    assert views.rejected("other_camera") == 1.0
    [fault] = await views.events(AuditAction.AUDIT_ACTION_BOUNDARY_FAULT)
    assert fault.details["reason"] == "other_camera"


async def test_a_new_request_replaces_the_older_one(views: Views) -> None:
    await views.declare()
    first = (await views.ask()).json()["request_id"]
    too_soon = await views.ask()
    assert too_soon.status_code == 429
    assert too_soon.headers["retry-after"] == "30"
    views.clock.advance(12)
    assert (await views.ask()).headers["retry-after"] == "18"

    views.clock.advance(18)
    second = await views.ask(sample_seconds=120)
    assert second.status_code == 202, second.text
    assert second.json()["request_id"] != first
    policy = await views.policy()
    assert (policy.view_request.request_id, policy.view_request.sample_seconds) == (
        second.json()["request_id"],
        120,
    )
    # The older request's answer, arriving late, is not this request's.
    await publish(views.nc, "north-gate", image_result("north-gate", first))
    assert (await views.view())["state"] == "pending"
    assert views.rejected("not_requested") == 1.0
    events = await views.events(AuditAction.AUDIT_ACTION_POLICY_CHANGE)
    assert events[-1].details["replaces"] == first

    # No answer within its sampling plus ten minutes: expired.
    views.clock.advance(120 + 600)
    assert (await views.view())["state"] == "expired"


async def test_a_later_change_keeps_the_request_in_the_policy(views: Views) -> None:
    await views.declare()
    request_id = (await views.ask()).json()["request_id"]
    before = await views.policy()
    paused = await views.client.post(
        "/cameras/north-gate/status", json={"status": "paused"}, headers=views.admin
    )
    assert paused.status_code == 200, paused.text
    after = await views.policy()
    assert after.version > before.version
    assert after.view_request == before.view_request
    assert after.view_request.request_id == request_id
    replaced = await views.client.put(
        "/cameras/north-gate",
        json={**declaration(name="North gate (east)"), "status": "active"},
        headers=views.admin,
    )
    assert replaced.status_code == 200, replaced.text
    assert (await views.policy()).view_request.request_id == request_id


async def test_refusals_name_the_field_or_say_why(views: Views) -> None:
    await views.declare()
    await views.declare("draft-cam", status="draft")
    url = "/cameras/north-gate/view-requests"
    for body, field in (
        ({}, "motive"),
        ({"motive": "   "}, "motive"),
        ({"motive": "x" * 1001}, "motive"),
        ({"motive": MOTIVE, "sample_seconds": 5}, "sample_seconds"),
        ({"motive": MOTIVE, "sample_seconds": 601}, "sample_seconds"),
        ({"motive": MOTIVE, "frames": 3}, "frames"),
    ):
        response = await views.client.post(url, json=body, headers=views.admin)
        assert response.status_code == 422, body
        assert [e["loc"] for e in response.json()["detail"]] == [["body", field]], body
    unknown = await views.ask("nowhere")
    assert unknown.status_code == 404
    draft = await views.ask("draft-cam")
    assert draft.status_code == 409
    assert "inference does not analyse it" in draft.json()["detail"]
    assert (await views.client.get("/cameras/nowhere/view", headers=views.admin)).status_code == 404

    reader = views.token("registry:read")
    assert (await views.client.post(url, json={"motive": MOTIVE}, headers=reader)).status_code == 403
    assert (await views.client.get("/cameras/north-gate/view", headers=reader)).status_code == 403
    assert (await views.client.get("/cameras/north-gate/view.jpg", headers=reader)).status_code == 403
    assert (await views.client.post(url, json={"motive": MOTIVE})).status_code == 401
    # Nothing refused reached the policy.
    assert not (await views.policy()).HasField("view_request")


async def test_a_picture_the_journal_cannot_confirm_does_not_leave(views: Views) -> None:
    await views.declare()
    request_id = (await views.ask()).json()["request_id"]
    await publish(views.nc, "north-gate", image_result("north-gate", request_id))
    views.sink.failures = 1_000_000  # NATS down for the journal: the read cannot be recorded
    response = await views.client.get("/cameras/north-gate/view.jpg", headers=views.admin)
    assert response.status_code == 503
    assert response.content != JPEG


def test_what_is_not_an_answer() -> None:
    request = SceneViewRequest("r-1", 1_000, 60)

    def judged(data: bytes) -> tuple[str, str | None]:
        view, rejected = judge_view("north-gate", request, PublishedView(data, 1), 1_010)
        return view.state, rejected

    good = image_result("north-gate", "r-1")
    assert judged(good.SerializeToString()) == ("ready", None)
    assert judged(b"\xff not a message") == ("pending", "malformed")
    unknown = SceneViewResult(schema_version=2, camera_id="north-gate", request_id="r-1", refused="no")
    assert judged(unknown.SerializeToString()) == ("pending", "unknown_schema")
    not_jpeg = image_result("north-gate", "r-1", jpeg=b"GIF89a")
    assert judged(not_jpeg.SerializeToString()) == ("pending", "malformed")
    empty = SceneViewResult(schema_version=1, camera_id="north-gate", request_id="r-1")
    assert judged(empty.SerializeToString()) == ("pending", "malformed")
    assert judge_view("north-gate", None, None, 0)[0].state == "none"
    assert judge_view("north-gate", request, None, 1_000 + 60 + 600)[0].state == "expired"


# -- the service on the platform's server ------------------------------------------------------------------


@pytest.mark.integration
async def test_inference_publishes_and_the_service_reads_it(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, tmp_path: Any
) -> None:
    from .test_service import KEY, make_settings

    settings = make_settings(
        secured_nats_server, Database(f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3")
    )
    issuer = LocalTokenIssuer.from_settings(AuthSettings(local_key=KEY))  # type: ignore[arg-type]
    admin = {
        "Authorization": f"Bearer {issuer.mint('operator-1', ['registry:admin'])}",
        "X-Vigie-Motive": "integration test",
    }
    async with running_service("registry", settings, serve) as runtime:
        api = f"{runtime.http_url}{API_PREFIX}"
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(200):
                if (await http.get(f"{runtime.http_url}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await http.get(f"{runtime.http_url}/readyz")).status_code == 200
            body = {"id": "north-gate", **declaration(), "status": "active"}
            assert (await http.post(f"{api}/cameras", json=body, headers=admin)).status_code == 201
            asked = await http.post(
                f"{api}/cameras/north-gate/view-requests", json={"motive": MOTIVE}, headers=admin
            )
            assert asked.status_code == 202, asked.text
            request_id = asked.json()["request_id"]

            # The policy bucket, as inference reads it, carries the request.
            kv = await (await as_service.js("registry")).key_value("vigie-policy")
            entry = await kv.get("north-gate")
            assert entry.value is not None
            assert decode_policy("north-gate", entry.value).view_request.request_id == request_id

            # Inference publishes the view as itself, into the registry's VIEWS.
            inference = await as_service.client("inference")
            result = image_result("north-gate", request_id)
            await inference.publish(
                views_subject("north-gate"),
                result.SerializeToString(),
                headers={"Nats-Msg-Id": f"view-{request_id}"},
            )
            await inference.flush()
            for _ in range(100):
                view = (await http.get(f"{api}/cameras/north-gate/view", headers=admin)).json()
                if view["state"] == "ready":
                    break
                await asyncio.sleep(0.05)
            assert view["state"] == "ready", view
            assert view["image_url"] == "/v1/cameras/north-gate/view.jpg"
            picture = await http.get(f"{runtime.http_url}{view['image_url']}", headers=admin)
            assert picture.content == JPEG
