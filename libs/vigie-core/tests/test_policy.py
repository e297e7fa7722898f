"""The policy every service reads: the rule (status, objection pause, authorisation window), the format's
checks, and the watcher against a real nats-server with the per-service users: it fails closed while
the bucket is missing, unreadable or unreachable, and applies changes within a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from vigie_core.lifecycle import service_runtime
from vigie_core.messaging import connect
from vigie_core.permissions import api_prefix
from vigie_core.policy import (
    DECISION_CAUSES,
    POLICY_BUCKET,
    PolicySettings,
    PolicyWatcher,
    StaticPolicies,
    UnreadablePolicyError,
    decide,
    decode_policy,
    encode_policy,
    geometry_document,
    policy_view,
    timestamp,
)
from vigie_core.settings import NatsSettings, ServiceSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_proto.v1.policy_pb2 import (
    AnalysisOutput,
    AnalysisZone,
    CameraPolicy,
    CameraStatus,
    CountingLine,
    LineDirections,
    NormalisedPoint,
    Purpose,
)
from vigie_proto.v1.tracks_pb2 import ObjectClass

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def policy(camera_id: str = "north-gate", **fields: object) -> CameraPolicy:
    message = CameraPolicy(
        schema_version=1,
        camera_id=camera_id,
        version=1,
        status=CameraStatus.CAMERA_STATUS_ACTIVE,
        purpose=Purpose.PURPOSE_PEDESTRIAN_FLOW_STATISTICS,
        outputs=[AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS],
        object_classes=[ObjectClass.OBJECT_CLASS_PERSON],
        sample_fps=5.0,
        reporting_window_seconds=1200,
        lines=[
            CountingLine(
                id="gate",
                start=NormalisedPoint(x=0.1, y=0.5),
                end=NormalisedPoint(x=0.9, y=0.5),
                directions=LineDirections.LINE_DIRECTIONS_BOTH,
            )
        ],
        dwell_bucket_seconds=[30, 120, 600],
    )
    for name, value in fields.items():
        if isinstance(value, datetime):
            getattr(message, name).CopyFrom(timestamp(value))
        else:
            setattr(message, name, value)
    return message


# -- the rule ----------------------------------------------------------------------------------------------


def test_only_an_active_camera_outside_any_pause_is_analysed() -> None:
    now = NOW.timestamp()
    assert decide("c", policy(), now).analyse
    for status in ("DRAFT", "PAUSED", "RETIRED"):
        decision = decide("c", policy(status=CameraStatus.Value(f"CAMERA_STATUS_{status}")), now)
        assert not decision.analyse
        assert status.lower() in decision.reason
    paused = policy(paused_until=NOW + timedelta(minutes=15))
    assert not decide("c", paused, now).analyse
    assert "objection" in decide("c", paused, now).reason
    assert decide("c", paused, now + 15 * 60).analyse  # the pause ends by itself


def test_security_events_are_analysed_only_within_the_authorisation_window() -> None:
    events = policy(purpose=Purpose.PURPOSE_SECURITY_EVENTS)
    assert not decide("c", events, NOW.timestamp()).analyse
    window = policy(
        purpose=Purpose.PURPOSE_SECURITY_EVENTS,
        authorised_from=NOW - timedelta(days=1),
        authorised_until=NOW + timedelta(days=1),
    )
    assert decide("c", window, NOW.timestamp()).analyse
    assert not decide("c", window, (NOW + timedelta(days=1)).timestamp()).analyse
    assert not decide("c", window, (NOW - timedelta(days=2)).timestamp()).analyse


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xff\xff", "not a vigie.v1.CameraPolicy"),
        (policy(schema_version=2).SerializeToString(), "schema_version 2"),
        (policy(camera_id="other").SerializeToString(), "is the policy of 'other'"),
        (policy(status=CameraStatus.CAMERA_STATUS_UNSPECIFIED).SerializeToString(), "status"),
        (policy(status=42).SerializeToString(), "status"),
        (policy(purpose=Purpose.PURPOSE_UNSPECIFIED).SerializeToString(), "purpose"),
    ],
)
def test_an_entry_that_cannot_be_applied_is_unreadable(payload: bytes, reason: str) -> None:
    with pytest.raises(UnreadablePolicyError, match=reason):
        decode_policy("north-gate", payload)


def test_an_unknown_enum_value_is_a_rule_this_code_cannot_apply() -> None:
    newer = policy()
    newer.outputs.append(99)  # type: ignore[arg-type]
    with pytest.raises(UnreadablePolicyError, match="outputs"):
        decode_policy("north-gate", newer.SerializeToString())
    assert decode_policy("north-gate", encode_policy(policy())) == policy()


def test_every_decision_names_its_cause_from_a_closed_list() -> None:
    now = NOW.timestamp()
    cases = {
        "analysing": policy(),
        "inactive": policy(status=CameraStatus.CAMERA_STATUS_DRAFT),
        "objection_pause": policy(paused_until=NOW + timedelta(minutes=1)),
        "outside_authorisation": policy(purpose=Purpose.PURPOSE_SECURITY_EVENTS),
    }
    for cause, message in cases.items():
        assert decide("c", message, now).cause == cause
    static = StaticPolicies([policy()], clock=NOW.timestamp)
    assert static.decision("unknown").cause == "no_policy"
    assert static.cameras() == ["north-gate"]
    assert set(cases) | {"no_policy"} <= set(DECISION_CAUSES)


async def test_a_service_with_the_policy_off_gets_no_watcher_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with service_runtime("example", ServiceSettings()) as runtime:
        assert await policy_view(runtime, None, PolicySettings(enabled=False)) is None  # type: ignore[arg-type]
        assert "policy" not in runtime.readiness.failures()
    assert "policy.enabled is false" in caplog.text
    assert PolicySettings().enabled, "the policy is followed unless a deployment says otherwise"


def test_static_policies_answer_like_the_watcher() -> None:
    policies = StaticPolicies([policy()], clock=NOW.timestamp)
    assert policies.decision("north-gate").analyse
    assert not policies.decision("south-gate").analyse
    policies.remove("north-gate")
    assert "no policy" in policies.decision("north-gate").reason
    with pytest.raises(UnreadablePolicyError):
        policies.set(policy(schema_version=3))


def test_geometry_document_has_the_anonymisers_shape_and_only_what_outputs_allow() -> None:
    zone = AnalysisZone(
        id="square",
        polygon=[NormalisedPoint(x=0.1, y=0.1), NormalisedPoint(x=0.9, y=0.1), NormalisedPoint(x=0.5, y=0.9)],
        classes=[ObjectClass.OBJECT_CLASS_PERSON],
    )
    message = policy()
    message.zones.append(zone)
    document = geometry_document(message)
    assert document["id"] == "north-gate"
    assert document["reporting_window_s"] == 1200
    # A line without classes counts the purpose's classes, not all six (the anonymiser's "empty: all").
    assert document["lines"] == [
        {"id": "gate", "start": (0.1, 0.5), "end": (0.9, 0.5), "directions": "both", "classes": ["person"]}
    ]
    assert document["zones"] == []  # line crossings only: the zone is not measured
    message.outputs.append(AnalysisOutput.ANALYSIS_OUTPUT_ZONE_OCCUPANCY)
    assert geometry_document(message)["zones"][0]["classes"] == ["person"]


# -- the watcher, against a real nats-server -----------------------------------------------------------------


async def service_client(server: EmbeddedNats, service: str) -> Client:
    credentials = server.credentials(service)
    settings = NatsSettings(url=server.url, user=credentials.user, password=credentials.password)
    return await connect(settings, f"test-{service}")


async def registry_bucket(server: EmbeddedNats) -> tuple[Client, KeyValue]:
    """The policy bucket (the provisioner's), as the registry writes it."""
    nc = await service_client(server, "registry")
    kv = await nc.jetstream().key_value(POLICY_BUCKET)
    return nc, kv


# How a service of another account than the registry's reaches the policy bucket.
READ_FROM_ELSEWHERE = api_prefix("ingest", f"KV_{POLICY_BUCKET}")


@pytest.fixture
async def ingest(secured_nats_server: EmbeddedNats) -> AsyncIterator[tuple[PolicyWatcher, CollectorRegistry]]:
    nc = await service_client(secured_nats_server, "ingest")
    registry = CollectorRegistry()
    watcher = PolicyWatcher(nc, api=READ_FROM_ELSEWHERE, registry=registry, retry_s=0.05, check_s=0.05)
    await watcher.start()
    try:
        yield watcher, registry
    finally:
        await watcher.close()
        await nc.close()


def metric(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


@pytest.mark.integration
@pytest.mark.provision(False)
async def test_the_watcher_fails_closed_until_the_bucket_exists_then_follows_it(
    secured_nats_server: EmbeddedNats,
    ingest: tuple[PolicyWatcher, CollectorRegistry],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vigie.policy")
    watcher, registry = ingest
    await asyncio.sleep(0.2)
    assert "does not exist" in (watcher.problem() or "")
    decision = watcher.decision("north-gate")
    assert not decision.analyse
    assert "policy unknown" in decision.reason
    assert decision.cause == "policy_unavailable"
    assert metric(registry, "vigie_policy_synced") == 0
    assert "no camera is analysed" in caplog.text

    secured_nats_server.provision()
    nc, kv = await registry_bucket(secured_nats_server)
    try:
        await kv.put("north-gate", encode_policy(policy()))
        await watcher.wait_until(lambda: watcher.decision("north-gate").analyse, 5)
        assert watcher.problem() is None
        assert metric(registry, "vigie_policy_synced") == 1
        assert watcher.policy("north-gate") == policy()
        assert not watcher.decision("south-gate").analyse

        # An objection: the pause reaches the watcher well within a second.
        paused = policy(version=2, paused_until=datetime.now(UTC) + timedelta(minutes=15))
        started = time.monotonic()
        await kv.put("north-gate", encode_policy(paused))
        await watcher.wait_until(lambda: not watcher.decision("north-gate").analyse, 5)
        assert time.monotonic() - started < 1.0
        assert "objection" in watcher.decision("north-gate").reason

        # An entry it cannot read: that camera is not analysed, and the metric and a log line say so.
        await kv.put("south-gate", b"not a policy")
        await watcher.wait_until(lambda: "south-gate" in watcher.cameras(), 5)
        assert "unreadable policy" in watcher.decision("south-gate").reason
        assert watcher.decision("south-gate").cause == "unreadable_policy"
        assert metric(registry, "vigie_policy_unreadable_entries") == 1
        assert "camera south-gate: unreadable policy" in caplog.text

        # Deleted: unknown again.
        await kv.delete("north-gate")
        await watcher.wait_until(lambda: "north-gate" not in watcher.cameras(), 5)
        assert "no policy" in watcher.decision("north-gate").reason
    finally:
        await nc.close()


@pytest.mark.integration
async def test_only_the_registry_may_write_the_policy_and_only_its_readers_read_it(
    secured_nats_server: EmbeddedNats,
) -> None:
    nc, kv = await registry_bucket(secured_nats_server)
    await kv.put("north-gate", encode_policy(policy()))
    for service in ("ingest", "inference", "anonymiser", "aggregation", "audit"):
        client = await service_client(secured_nats_server, service)
        reader = service in ("ingest", "inference", "anonymiser")
        try:
            watcher = PolicyWatcher(client, api=READ_FROM_ELSEWHERE, retry_s=0.05, check_s=0.05)
            await watcher.start()
            if reader:
                await watcher.wait_synced(5)
                assert watcher.decision("north-gate").analyse, service
            else:
                # Not imported into its account: nothing answers its direct gets.
                await asyncio.sleep(0.5)
                assert not watcher.synced, service
                assert not watcher.decision("north-gate").analyse
            await watcher.close()
            # A put on the bucket's subject stays in the service's own account (refused to its user, too):
            # the registry's bucket never sees it.
            await client.publish(
                "$KV.vigie-policy.north-gate", encode_policy(policy(status=CameraStatus.CAMERA_STATUS_PAUSED))
            )
            await client.flush()
        finally:
            await client.close()
    assert (await kv.get("north-gate")).value == encode_policy(policy())
    await nc.close()


@pytest.mark.integration
async def test_the_watcher_fails_closed_when_nats_is_lost(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url, connect_timeout_s=1), "test-lost")
    kv = await nc.jetstream().key_value(POLICY_BUCKET)
    await kv.put("north-gate", encode_policy(policy()))
    watcher = PolicyWatcher(nc, retry_s=0.05, check_s=0.05)
    await watcher.start()
    try:
        await watcher.wait_synced(5)
        assert watcher.decision("north-gate").analyse
        nats_server.stop()
        await watcher.wait_until(lambda: not watcher.decision("north-gate").analyse, 10)
        assert "not connected" in watcher.decision("north-gate").reason
    finally:
        await watcher.close()
        await nc.close()
