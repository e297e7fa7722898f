"""The provisioner (vigie_core.provision) on a real nats-server: it creates every stream and bucket,
idempotently, from one settings object; as its NATS user it may do that and nothing else (it cannot read
FRAMES, publish, or delete a stream)."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType

from vigie_core.permissions import PROVISIONER, inbox_prefix
from vigie_core.provision import (
    ProvisionSettings,
    main,
    provision,
    provision_at,
    provisioned_buckets,
    provisioned_streams,
)
from vigie_core.streams import bucket_stream, frames_subject, provisioned_stream_names
from vigie_embedded.nats import EmbeddedNats

pytestmark = pytest.mark.integration

DENIED_TIMEOUT_S = 0.3


def test_one_definition_names_every_stream_the_permissions_grant() -> None:
    settings = ProvisionSettings()
    made = [c.name for c in provisioned_streams(settings)]
    made += [bucket_stream(b).name for b in provisioned_buckets(settings)]
    assert tuple(made) == provisioned_stream_names()
    assert not any(c.sources or c.mirror for c in provisioned_streams(settings))


@pytest.mark.provision(False)
async def test_everything_is_provisioned_once_then_left_alone_or_updated(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    first = await provision(client, ProvisionSettings(), accounts=False)
    assert [(r.stream, r.outcome) for r in first] == [(n, "created") for n in provisioned_stream_names()]
    again = await provision(client, ProvisionSettings(), accounts=False)
    assert {r.outcome for r in again} == {"unchanged"}

    resized = await provision(
        client, ProvisionSettings(frames_max_age_s=30, frames_partitions=2, policy_history=3), accounts=False
    )
    changed = {r.stream: r.outcome for r in resized if r.outcome != "unchanged"}
    assert set(changed) == {"FRAMES", "KV_vigie-policy"}
    assert "max_age" in changed["FRAMES"]
    assert "subject_transform" in changed["FRAMES"]
    frames = (await js.stream_info("FRAMES")).config
    assert (frames.max_age, frames.storage) == (pytest.approx(30), StorageType.MEMORY)
    # The buckets are usable as nats-py's own: same stream configuration.
    policy = await js.key_value("vigie-policy")
    assert (await policy.status()).history == 3
    await client.close()


@pytest.mark.provision(False)
async def test_a_change_carried_out_but_unanswered_is_reported_as_done(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy cluster may create or update a stream and answer too late: the retry then finds it as wanted,
    and the provisioner still says what it did, not "unchanged"."""
    late = {"add_stream": 1, "update_stream": 1}

    def answered_too_late(name: str) -> object:
        original = getattr(JetStreamContext, name)

        async def call(self: JetStreamContext, *args: object, **kwargs: object) -> object:
            answer = await original(self, *args, **kwargs)
            if late[name]:
                late[name] -= 1
                raise nats.errors.TimeoutError
            return answer

        return call

    for name in late:
        monkeypatch.setattr(JetStreamContext, name, answered_too_late(name))
    client = await nats.connect(nats_server.url)
    only = {"EVENTS"}
    created = await provision(client, ProvisionSettings(), accounts=False, only=only)
    assert [(r.stream, r.outcome) for r in created] == [("EVENTS", "created")]
    updated = await provision(client, ProvisionSettings(events_max_age_s=3600), accounts=False, only=only)
    assert [r.outcome for r in updated] == ["updated (max_age)"]
    assert late == {"add_stream": 0, "update_stream": 0}
    again = await provision(client, ProvisionSettings(events_max_age_s=3600), accounts=False, only=only)
    assert [r.outcome for r in again] == ["unchanged"]
    await client.close()


async def connection_answer(url: str, user: str, password: str) -> bytes:
    """What the server answers a connection as ``user`` (spoken by hand: nats-py leaves its socket open
    when the server refuses a connection)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        connect = json.dumps({"verbose": False, "pedantic": False, "user": user, "pass": password})
        writer.write(f"CONNECT {connect}\r\nPING\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()
        await writer.wait_closed()


async def denied(client: Client, errors: list[str], subject: str, payload: bytes = b"") -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await client.request(subject, payload, timeout=DENIED_TIMEOUT_S)
    wanted = f'permissions violation for publish to "{subject}"'.lower()
    for _ in range(100):
        if any(wanted in e.lower() for e in errors):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no violation for {subject}: {errors}")


async def test_the_provisioner_manages_streams_and_cannot_read_or_write_them(
    secured_nats_server: EmbeddedNats,
) -> None:
    server = secured_nats_server  # provisioned by its provisioner user already
    ingest, inference = await server.client("ingest"), await server.client("inference")
    await ingest.jetstream().publish(frames_subject("north-gate"), b"pixels")

    with server.provisioner() as settings:
        # Running it again as that user: idempotent, allowed.
        results = await provision_at(settings)
        assert {r.outcome for r in results} == {"unchanged"}

        errors: list[str] = []

        async def on_error(error: Exception) -> None:
            errors.append(str(error))

        client = await nats.connect(
            server.url,
            user=settings.user,
            password=settings.password.get_secret_value() if settings.password else None,
            inbox_prefix=inbox_prefix(PROVISIONER),
            error_cb=on_error,
            max_reconnect_attempts=0,
        )
        received: list[bytes] = []

        async def record(message: nats.aio.msg.Msg) -> None:
            received.append(message.data)

        await client.subscribe("vigie.frames.>", cb=record)
        # Neither under the accounts' prefixes it imports nor under its own account's API.
        attempts = [
            (f"{api}.{verb}", payload)
            for api in ("$JS.INFERENCE.API", "$JS.API")
            for verb, payload in (
                ("STREAM.MSG.GET.FRAMES", b'{"seq": 1}'),
                ("DIRECT.GET.FRAMES", b'{"seq": 1}'),
                ("CONSUMER.CREATE.FRAMES", b"{}"),
                ("CONSUMER.CREATE.FRAMES.reader.vigie.frames.>", b"{}"),
                ("STREAM.DELETE.FRAMES", b""),
                ("STREAM.CREATE.COPY", b"{}"),
            )
        ]
        await asyncio.gather(
            *(denied(client, errors, subject, payload) for subject, payload in attempts),
            denied(client, errors, "$JS.AGGREGATION.API.STREAM.PURGE.EVENTS"),
            denied(client, errors, frames_subject("north-gate"), b"forged"),
            denied(client, errors, "$KV.vigie-sources.north-gate", b"rtsp://attacker/"),
        )
        for _ in range(50):
            if any('subscription to "vigie.frames.>"' in e.lower() for e in errors):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"no subscription violation: {errors}")
        await ingest.jetstream().publish(frames_subject("north-gate"), b"more pixels")
        await asyncio.sleep(0.1)
        assert received == []
    assert (await inference.jetstream().stream_info("FRAMES")).state.messages == 2

    # Its user is gone with the block: its connection closed, its password refused.
    for _ in range(100):
        if not client.is_connected:
            break
        await asyncio.sleep(0.02)
    assert not client.is_connected
    password = settings.password.get_secret_value() if settings.password else ""
    assert await connection_answer(server.url, PROVISIONER, password) == b"-ERR 'Authorization Violation'\r\n"
    for nc in (ingest, inference, client):
        await nc.close()


@pytest.mark.provision(False)
def test_the_command_provisions_from_the_environment(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIE_PROVISION_NATS__URL", nats_server.url)
    monkeypatch.setenv("VIGIE_PROVISION_FRAMES_MAX_AGE_S", "12")
    assert main([]) == 0
    assert "FRAMES: created" in capsys.readouterr().out
    assert main([]) == 0
    assert "FRAMES: unchanged" in capsys.readouterr().out

    monkeypatch.setenv("VIGIE_PROVISION_FRAMES_MAX_AGEE_S", "12")
    assert main([]) == 2
    assert "VIGIE_PROVISION_FRAMES_MAX_AGEE_S" in capsys.readouterr().err


def test_the_command_fails_clearly_without_nats(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIE_PROVISION_NATS__URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("VIGIE_PROVISION_WAIT_S", "0.2")
    monkeypatch.setenv("VIGIE_PROVISION_NATS__CONNECT_TIMEOUT_S", "0.2")
    assert main([]) == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in capsys.readouterr().err
