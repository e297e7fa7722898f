"""The registry API in process: scopes, refusals naming the field and the rule, secrets never returned,
audit events, the policy bucket, objections and their receipts, the DPO's exports."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from vigie_core.audit import AuditAction, action_name
from vigie_core.policy import decide, decode_policy
from vigie_proto.v1.policy_pb2 import CameraPolicy, CameraStatus

from .conftest import NOW, Api, declaration, security_declaration

SECRET = "s3cret-pass"


def actions(api: Api) -> list[str]:
    return [action_name(e.action) for e in api.sink.events()]


async def published(api: Api, camera_id: str) -> CameraPolicy:
    value, _ = await api.bucket.read(camera_id)
    assert value is not None
    return decode_policy(camera_id, value)


async def create(api: Api, camera_id: str = "north-gate", **changes: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/cameras", json={"id": camera_id, **declaration(**changes)}, headers=api.admin
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_every_route_needs_its_scope(api: Api) -> None:
    body = {"id": "north-gate", **declaration()}
    assert (await api.client.get("/cameras")).status_code == 401
    assert (await api.client.post("/cameras", json=body)).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await api.client.get("/cameras", headers=bad)).status_code == 401
    stats = api.token("stats:read")
    assert (await api.client.get("/cameras", headers=stats)).status_code == 403
    read = api.token("registry:read")
    assert (await api.client.post("/cameras", json=body, headers=read)).status_code == 403
    assert (await api.client.get("/register", headers=read)).status_code == 403
    assert (await api.client.get("/cameras", headers=read)).status_code == 200
    assert (await api.client.get("/register", headers=api.token("registry:dpo"))).status_code == 200
    # Public routes need no login.
    assert (await api.client.get("/purposes")).status_code == 200
    assert (await api.client.get("/public/cameras")).status_code == 200


async def test_a_camera_is_declared_audited_and_published_without_its_secret(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    camera = await create(api, status="active")
    assert camera["source"] == {
        "display_url": "rtsp://viewer:***@10.0.0.12:554/stream?token=***",
        "has_credentials": True,
    }
    assert camera["live_state"] == "analysing"
    assert camera["policy_published"] is True
    text = json.dumps(camera)
    assert SECRET not in text
    assert "abc123" not in text
    assert SECRET not in caplog.text
    # Stored sealed, readable for ingest only.
    assert await api.store.source_url("north-gate") == declaration()["source"]["url"]
    listed = (await api.client.get("/cameras", headers=api.token("registry:read"))).json()
    assert SECRET not in json.dumps(listed)

    [event] = api.sink.events()
    assert action_name(event.action) == "config_create"
    assert event.actor == "operator-7"
    assert event.motive == "declaring the north gate camera"
    assert list(event.camera_ids) == ["north-gate"]
    assert SECRET not in str(event)

    policy = await published(api, "north-gate")
    assert policy.status == CameraStatus.CAMERA_STATUS_ACTIVE
    assert [m.id for m in policy.masks] == ["window"]
    assert [line.id for line in policy.lines] == ["gate"]
    assert policy.version == camera["version"]
    assert SECRET.encode() not in policy.SerializeToString()
    assert decide("north-gate", policy, NOW.timestamp()).analyse


async def test_a_refusal_names_the_field_and_the_rule_and_never_echoes_the_body(api: Api) -> None:
    response = await api.client.post(
        "/cameras",
        json={"id": "north-gate", **declaration(outputs=["line_crossings", "face_recognition"], audio=True)},
        headers=api.admin,
    )
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert {(tuple(e["loc"]), e["rule"]) for e in errors} == {
        (("body", "outputs", 1), "docs/privacy.md rule 24"),
        (("body", "audio"), "docs/privacy.md rule 25"),
    }
    assert all("docs/privacy.md rule" in e["msg"] for e in errors)
    assert api.metric("vigie_registry_declarations_refused_total", {"rule": "docs/privacy.md rule 24"}) == 1
    # A shape error in the body: FastAPI's 422, without the input (it may hold the source's password).
    broken = declaration()
    broken["location"] = {"address": "x", "latitude": 300, "longitude": 0}
    response = await api.client.post("/cameras", json={"id": "north-gate", **broken}, headers=api.admin)
    assert response.status_code == 422
    assert ["body", "location", "latitude"] in [e["loc"] for e in response.json()["detail"]]
    assert SECRET not in response.text
    response = await api.client.post(
        "/cameras",
        json={"id": "north-gate", **declaration(source={"url": "ftp://u:s3cret-pass@h/x"})},
        headers=api.admin,
    )
    assert response.status_code == 422
    assert SECRET not in response.text
    assert api.sink.events() == []
    assert api.bucket.values == {}


async def test_activation_needs_a_dpia_reference(api: Api) -> None:
    await create(api, legal={"basis": "public_task"})
    response = await api.client.post(
        "/cameras/north-gate/status", json={"status": "active"}, headers=api.admin
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "legal", "dpia_reference"]
    assert error["rule"] == "docs/privacy.md rule 3"
    assert (await published(api, "north-gate")).status == CameraStatus.CAMERA_STATUS_DRAFT


async def test_changes_are_audited_as_config_and_policy_changes_and_republished(api: Api) -> None:
    created = await create(api)
    body = declaration(masks=[])
    del body["source"]  # without source: the stored one stays
    response = await api.client.put(
        "/cameras/north-gate", json={**body, "status": "active"}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["version"] > created["version"]
    assert updated["source"]["has_credentials"] is True
    assert actions(api) == ["config_create", "config_update", "policy_change"]
    change = api.sink.events()[-1]
    assert change.details["changed"] == "masks,status"
    assert change.details["from_status"] == "draft"
    policy = await published(api, "north-gate")
    assert policy.status == CameraStatus.CAMERA_STATUS_ACTIVE
    assert list(policy.masks) == []

    # A change that changes nothing writes nothing.
    again = await api.client.put("/cameras/north-gate", json={**body, "status": "active"}, headers=api.admin)
    assert again.json()["version"] == updated["version"]
    assert len(api.sink.events()) == 3

    # A less protective setting: its written justification is in the audit event (rule 8).
    justified = {**body, "sample_fps": 8.0, "sample_fps_justification": "fast cyclists on the bridge"}
    response = await api.client.put(
        "/cameras/north-gate", json={**justified, "status": "active"}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    event = api.sink.events()[-1]
    assert event.details["justification.sample_fps_justification"] == "fast cyclists on the bridge"
    assert action_name(event.action) == "policy_change"
    await api.client.put("/cameras/north-gate", json={**body, "status": "active"}, headers=api.admin)

    # Only the description: a configuration change, not a policy change.
    await api.client.put(
        "/cameras/north-gate",
        json={**body, "status": "active", "description": "new words"},
        headers=api.admin,
    )
    assert actions(api)[-1] == "config_update"

    # A new source: recorded as changed, never its value.
    response = await api.client.put(
        "/cameras/north-gate",
        json={
            **body,
            "status": "active",
            "description": "new words",
            "source": {"url": "http://cam.example/m"},
        },
        headers=api.admin,
    )
    assert response.json()["source"] == {"display_url": "http://cam.example/m", "has_credentials": False}
    assert api.sink.events()[-1].details["changed"] == "source"


async def test_status_transitions_are_checked(api: Api) -> None:
    await create(api, status="active")
    retire = await api.client.post(
        "/cameras/north-gate/status", json={"status": "retired"}, headers=api.admin
    )
    assert retire.status_code == 200
    assert (await published(api, "north-gate")).status == CameraStatus.CAMERA_STATUS_RETIRED
    back = await api.client.post("/cameras/north-gate/status", json={"status": "active"}, headers=api.admin)
    assert back.status_code == 409
    assert "retired" in back.json()["detail"]


async def test_a_deleted_camera_loses_its_policy(api: Api) -> None:
    await create(api, status="active")
    response = await api.client.delete("/cameras/north-gate", headers=api.admin)
    assert response.status_code == 204
    assert "north-gate" not in api.bucket.values
    assert actions(api)[-2:] == ["config_delete", "policy_change"]
    assert (await api.client.delete("/cameras/north-gate", headers=api.admin)).status_code == 404
    assert await api.store.tombstones() == []


async def test_every_change_says_why(api: Api) -> None:
    headers = {k: v for k, v in api.admin.items() if k != "X-Vigie-Motive"}
    response = await api.client.post("/cameras", json={"id": "north-gate", **declaration()}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "motive"]
    response = await api.client.post(
        "/cameras",
        params={"motive": "new camera"},
        json={"id": "north-gate", **declaration()},
        headers=headers,
    )
    assert response.status_code == 201
    assert api.sink.events()[0].motive == "new camera"


async def test_what_cannot_be_audited_is_not_done(api: Api) -> None:
    response = await api.client.post(
        "/cameras",
        json={"id": "north-gate", **declaration()},
        headers=api.token("registry:admin", subject="a@b.fr"),
    )
    assert response.status_code == 403
    assert "e-mail" in response.json()["detail"]
    assert await api.store.camera("north-gate") is None


async def test_a_failed_publication_is_retried_by_the_reconciler(api: Api) -> None:
    api.bucket.fail = True
    camera = await create(api, status="active")
    assert camera["policy_published"] is False
    assert api.metric("vigie_registry_policy_publications_total", {"outcome": "failed"}) == 1
    result = await api.publisher.reconcile()
    assert result.failed == 1
    assert api.publisher.problem() == "1 camera(s) not yet in every bucket (policy, sources)"
    api.bucket.fail = False
    assert (await api.publisher.reconcile()).published == 1
    assert api.publisher.problem() is None
    assert (await published(api, "north-gate")).version == camera["version"]
    # At start, a full reconciliation also removes keys of cameras the registry does not have.
    api.bucket.values["ghost"] = (b"x", 99)
    assert (await api.publisher.reconcile(full=True)).removed == 1
    assert "ghost" not in api.bucket.values


# -- objections ------------------------------------------------------------------------------------------


async def test_an_objection_pauses_the_camera_at_once_and_gets_a_verifiable_receipt(api: Api) -> None:
    await create(api, status="active")
    before = await published(api, "north-gate")
    response = await api.client.post("/public/cameras/north-gate/objections")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["applied"] is True
    assert result["extended"] is False
    receipt = result["receipt"]
    assert receipt["paused_until"] == int(NOW.timestamp()) + 900
    policy = await published(api, "north-gate")
    assert policy.version > before.version
    decision = decide("north-gate", policy, NOW.timestamp() + 1)
    assert not decision.analyse
    assert "objection" in decision.reason
    assert decide("north-gate", policy, NOW.timestamp() + 901).analyse

    public = (await api.client.get("/public/cameras/north-gate")).json()
    assert public["state"] == "paused_by_objection"

    verdict = (await api.client.post("/public/receipts/verify", json=receipt)).json()
    assert verdict == {"valid": True, "recorded": True}
    forged = {**receipt, "paused_until": receipt["paused_until"] + 3600}
    assert (await api.client.post("/public/receipts/verify", json=forged)).json()["valid"] is False

    [event] = [e for e in api.sink.events() if e.action == AuditAction.AUDIT_ACTION_OBJECTION_HONOURED]
    assert event.actor == "public:anonymous"
    assert [(r.kind, r.id) for r in event.records] == [("objection", receipt["receipt_id"])]
    assert "127.0.0.1" not in str(event)
    assert "testclient" not in str(event)
    assert api.metric("vigie_registry_objections_total", {"outcome": "paused"}) == 1


async def test_pauses_are_extended_not_stacked_and_bounded(api: Api) -> None:
    await create(api, status="active")
    first = (await api.client.post("/public/cameras/north-gate/objections")).json()
    api.clock.advance(600)
    second = (await api.client.post("/public/cameras/north-gate/objections")).json()
    assert second["extended"] is True
    # Extended to 15 minutes from now, not 15 more minutes after the first pause.
    assert second["receipt"]["paused_until"] == first["receipt"]["paused_until"] + 600
    long = await api.client.post("/public/cameras/north-gate/objections", json={"duration_s": 7200})
    assert long.status_code == 422
    assert long.json()["detail"][0]["loc"] == ["body", "duration_s"]
    assert api.metric("vigie_registry_objections_total", {"outcome": "extended"}) == 1


async def test_the_objection_rate_is_limited_per_client_and_counted(api: Api) -> None:
    await create(api, status="active")
    for _ in range(3):
        assert (await api.client.post("/public/cameras/north-gate/objections")).status_code == 201
    limited = await api.client.post("/public/cameras/north-gate/objections")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert api.metric("vigie_registry_objections_rate_limited_total") == 1


async def test_only_an_analysing_camera_can_be_objected_to(api: Api) -> None:
    await create(api)
    response = await api.client.post("/public/cameras/north-gate/objections")
    assert response.status_code == 409
    assert "not analysing" in response.json()["detail"]
    assert (await api.client.post("/public/cameras/nowhere/objections")).status_code == 404
    assert (await api.client.get("/public/cameras/north-gate")).status_code == 404  # a draft is not public
    assert api.metric("vigie_registry_objections_total", {"outcome": "refused"}) == 1


async def test_objection_restricted_by_law_is_refused_with_the_text(api: Api) -> None:
    await create(
        api,
        status="active",
        objection={"enabled": False},
        legal={
            "basis": "public_task",
            "dpia_reference": "D-1",
            "rights_restriction_legal_text": "Loi 2023-380",
        },
    )
    response = await api.client.post("/public/cameras/north-gate/objections")
    assert response.status_code == 409
    assert "Loi 2023-380" in response.json()["detail"]


# -- security events -------------------------------------------------------------------------------------


async def test_security_events_switch_off_when_the_authorisation_ends(api: Api) -> None:
    from vigie_registry.metrics import RegistryMetrics
    from vigie_registry.service import end_authorisations

    response = await api.client.post(
        "/cameras", json={"id": "station", **security_declaration(), "status": "active"}, headers=api.admin
    )
    assert response.status_code == 201, response.text
    audit = api.audit
    assert await end_authorisations(api.store, api.publisher, audit, api.clock(), RegistryMetrics()) == []
    api.clock.advance(timedelta(days=9, hours=1).total_seconds())
    policy = await published(api, "station")
    assert not decide("station", policy, api.clock()).analyse  # consumers stop by themselves
    assert await end_authorisations(api.store, api.publisher, audit, api.clock(), RegistryMetrics()) == [
        "station"
    ]
    camera = (await api.client.get("/cameras/station", headers=api.admin)).json()
    assert (camera["status"], camera["status_reason"]) == ("paused", "authorisation_ended")
    assert (await published(api, "station")).status == CameraStatus.CAMERA_STATUS_PAUSED
    event = api.sink.events()[-1]
    assert (action_name(event.action), event.actor, event.details["reason"]) == (
        "policy_change",
        "service:registry",
        "authorisation_ended",
    )
    # It cannot be activated again without a new authorisation window.
    again = await api.client.post("/cameras/station/status", json={"status": "active"}, headers=api.admin)
    assert again.status_code == 422
    assert again.json()["detail"][0]["rule"] == "docs/privacy.md rule 5"


# -- exports ---------------------------------------------------------------------------------------------


async def test_an_export_the_journal_cannot_confirm_is_refused(api: Api) -> None:
    await create(api, status="active")
    api.sink.failures = 1_000_000  # NATS down: the export's event cannot be stored
    response = await api.client.get("/register", headers=api.token("registry:dpo", subject="dpo-1"))
    assert response.status_code == 503
    assert "cannot be recorded in the audit journal" in response.json()["detail"]
    assert "entries" not in response.text


async def test_the_dpo_exports_the_register_in_json_and_csv_audited(api: Api) -> None:
    await create(api, status="active")
    await api.client.post("/public/cameras/north-gate/objections")
    dpo = api.token("registry:dpo", subject="dpo-1")
    response = await api.client.get("/register", headers=dpo)
    assert response.status_code == 200
    register = response.json()
    assert register["format"] == "vigie.processing-register/1"
    [entry] = register["entries"]
    assert entry["purpose"]["name"] == "pedestrian_flow_statistics"
    assert entry["dpia_reference"] == "DPIA-2026-004"
    assert entry["controller"]["email"] == "mobilite@ville.example"
    assert entry["retention"]["statistics_days"] == 365
    assert entry["objections_last_365_days"] == 1
    assert SECRET not in response.text
    assert "10.0.0.12" not in response.text

    response = await api.client.get("/register", params={"format": "csv"}, headers=dpo)
    assert response.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["camera_id"] == "north-gate"
    assert row["legal_basis"].startswith("GDPR art. 6(1)(e)")
    assert (await api.client.get("/register", headers={**dpo, "Accept": "text/csv"})).text == response.text
    assert (await api.client.get("/register", headers={**dpo, "Accept": "image/png"})).status_code == 406

    exports = [e for e in api.sink.events() if e.action == AuditAction.AUDIT_ACTION_DATA_EXPORT]
    assert [(e.actor, e.details["format"]) for e in exports] == [
        ("dpo-1", "json"),
        ("dpo-1", "csv"),
        ("dpo-1", "csv"),
    ]


async def test_the_dpia_starting_document_is_generated_from_the_register(api: Api) -> None:
    await create(api, status="active", name="North | gate *")
    response = await api.client.get("/cameras/north-gate/dpia", headers=api.token("registry:dpo"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    document = response.text
    assert document.startswith("# Data protection impact assessment — North \\| gate \\* (`north-gate`)")
    for heading in ("## 1. Context", "## 3. Necessity and proportionality", "## 4. Risks and measures"):
        assert heading in document
    assert "DPIA-2026-004" in document
    assert action_name(api.sink.events()[-1].action) == "data_export"
    assert (
        await api.client.get("/cameras/nowhere/dpia", headers=api.token("registry:dpo"))
    ).status_code == 404


async def test_purposes_say_what_each_allows(api: Api) -> None:
    purposes = {p["name"]: p for p in (await api.client.get("/purposes")).json()["purposes"]}
    assert set(purposes) == {
        "traffic_flow_statistics",
        "pedestrian_flow_statistics",
        "occupancy_statistics",
        "security_events",
    }
    assert [o["name"] for o in purposes["pedestrian_flow_statistics"]["outputs"]] == ["line_crossings"]
    assert purposes["security_events"]["needs_authorisation"] is True


async def test_the_effective_policy_is_readable_as_json(api: Api) -> None:
    await create(api, status="active")
    response = await api.client.get("/cameras/north-gate/policy", headers=api.token("registry:read"))
    policy = response.json()
    assert policy["camera_id"] == "north-gate"
    assert policy["purpose"] == "PURPOSE_PEDESTRIAN_FLOW_STATISTICS"
    assert policy["outputs"] == ["ANALYSIS_OUTPUT_LINE_CROSSINGS"]
    assert policy["object_classes"] == ["OBJECT_CLASS_PERSON"]


async def test_a_forged_receipt_with_any_characters_is_just_invalid(api: Api) -> None:
    from vigie_registry.objections import Receipt

    assert not api.signer.verify(Receipt("0" * 32, "north-gate", 1, 2, "\u00db\udb7d"))
    body = {"receipt_id": "0" * 32, "camera_id": "north-gate", "recorded_at": 1, "paused_until": 2}
    response = await api.client.post("/public/receipts/verify", json={**body, "signature": "ÿé"})
    assert response.status_code == 422
    response = await api.client.post("/public/receipts/verify", json={**body, "signature": "AAAA"})
    assert response.json() == {"valid": False, "recorded": False}
