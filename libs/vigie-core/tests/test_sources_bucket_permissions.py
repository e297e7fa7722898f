"""The sources bucket (vigie-sources: the cameras' sealed source URLs) on a real nats-server running the
permissions of vigie_core.permissions: the registry writes it, ingest reads and watches it and cannot write
it, and no other service can look it up, get an entry, watch it or subscribe to its subjects; and no
service can configure a stream, so none can make one copy the bucket (or FRAMES) server-side.

A denied JetStream API request gets no answer; each refusal is checked by the server's violation message
for that subject (on the connection's error callback) and by the attacker having received nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig, StreamSource

from vigie_core.permissions import SERVICES, SOURCES_BUCKET
from vigie_core.streams import (
    AuditStream,
    DeadLetterStream,
    EventsStream,
    FramesStream,
    SourcesBucket,
    TracksStream,
    bucket_stream,
    provisioned_stream_names,
)
from vigie_embedded.nats import EmbeddedNats

pytestmark = pytest.mark.integration

STREAM = f"KV_{SOURCES_BUCKET}"
SEALED = b"sealed source of north-gate"
DENIED_TIMEOUT_S = 0.3
OTHERS = ("inference", "anonymiser", "aggregation", "audit")


@dataclass
class Connection:
    service: str
    nc: Client
    errors: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    async def violation(self, operation: str, subject: str) -> None:
        wanted = f'permissions violation for {operation} to "{subject}"'.lower()
        for _ in range(150):
            if any(wanted in error.lower() for error in self.errors):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.service}: no violation of {operation} to {subject}: {self.errors}")


@contextlib.asynccontextmanager
async def connected(server: EmbeddedNats, service: str) -> AsyncIterator[Connection]:
    credentials = server.credentials(service)
    connection: Connection | None = None

    async def on_error(error: Exception) -> None:
        assert connection is not None
        connection.errors.append(str(error))

    nc = await nats.connect(
        server.url,
        user=credentials.user,
        password=credentials.password,
        inbox_prefix=credentials.inbox_prefix,
        error_cb=on_error,
        max_reconnect_attempts=0,
    )
    connection = Connection(service, nc)
    try:
        yield connection
    finally:
        await nc.close()


async def cannot_read(other: Connection) -> None:
    js = other.nc.jetstream(timeout=DENIED_TIMEOUT_S)
    with pytest.raises(nats.errors.TimeoutError):
        await js.key_value(SOURCES_BUCKET)
    await other.violation("publish", f"$JS.API.STREAM.INFO.{STREAM}")
    direct = f"$JS.API.DIRECT.GET.{STREAM}.$KV.{SOURCES_BUCKET}.north-gate"
    with pytest.raises(nats.errors.TimeoutError):
        await other.nc.request(direct, b"", timeout=DENIED_TIMEOUT_S)
    await other.violation("publish", direct)
    with pytest.raises(nats.errors.TimeoutError):
        await other.nc.request(
            f"$JS.API.STREAM.MSG.GET.{STREAM}",
            b'{"last_by_subj": "$KV.vigie-sources.north-gate"}',
            timeout=DENIED_TIMEOUT_S,
        )
    await other.violation("publish", f"$JS.API.STREAM.MSG.GET.{STREAM}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.subscribe(f"$KV.{SOURCES_BUCKET}.>", stream=STREAM, ordered_consumer=True)
    await other.violation("publish", f"$JS.API.CONSUMER.CREATE.{STREAM}")

    async def record(message: Msg) -> None:
        other.received.append(message.data)

    await other.nc.subscribe(f"$KV.{SOURCES_BUCKET}.>", cb=record)
    await other.violation("subscription", f"$KV.{SOURCES_BUCKET}.>")


async def test_only_ingest_reads_the_sources_and_only_the_registry_writes_them(
    secured_nats_server: EmbeddedNats,
) -> None:
    server = secured_nats_server
    async with contextlib.AsyncExitStack() as stack:
        c = {
            s: await stack.enter_async_context(connected(server, s)) for s in ("registry", "ingest", *OTHERS)
        }
        # The provisioner created the bucket; the registry binds it and writes, conditionally, as its
        # publisher does.
        kv = await c["registry"].nc.jetstream().key_value(SOURCES_BUCKET)
        revision = await kv.create("north-gate", SEALED)
        await kv.update("north-gate", SEALED, last=revision)
        assert (await kv.get("north-gate")).value == SEALED
        assert await kv.keys() == ["north-gate"]

        # Ingest reads and watches it...
        ingest_kv = await c["ingest"].nc.jetstream().key_value(SOURCES_BUCKET)
        assert (await ingest_kv.get("north-gate")).value == SEALED
        watch = await ingest_kv.watchall()
        update = await watch.updates(timeout=2)
        assert update is not None
        assert update.value == SEALED
        await watch.stop()
        # ...and cannot write it.
        ingest_js = c["ingest"].nc.jetstream(timeout=DENIED_TIMEOUT_S)
        with pytest.raises(nats.errors.TimeoutError):
            await ingest_js.publish(f"$KV.{SOURCES_BUCKET}.north-gate", b"rtsp://attacker/")
        await c["ingest"].violation("publish", f"$KV.{SOURCES_BUCKET}.north-gate")
        with pytest.raises(nats.errors.TimeoutError):
            await ingest_js.delete_stream(STREAM)
        await c["ingest"].violation("publish", f"$JS.API.STREAM.DELETE.{STREAM}")
        assert (await kv.get("north-gate")).value == SEALED

        # Nobody else can look it up, get an entry, watch it or listen to its subjects (all at once: each
        # denied request waits for its timeout).
        await asyncio.gather(*(cannot_read(c[service]) for service in OTHERS))

        await kv.put("north-gate", SEALED + b" (new)")
        await asyncio.sleep(0.2)
        for service in OTHERS:
            assert c[service].received == [], service
        assert not c["registry"].errors


async def _cannot_configure(connection: Connection, config: StreamConfig) -> None:
    js = connection.nc.jetstream(timeout=DENIED_TIMEOUT_S)
    with pytest.raises(nats.errors.TimeoutError):
        await js.update_stream(config)
    await connection.violation("publish", f"$JS.API.STREAM.UPDATE.{config.name}")
    copy = StreamConfig(name=f"COPY_{connection.service.upper()}", subjects=[], sources=config.sources)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_stream(copy)
    await connection.violation("publish", f"$JS.API.STREAM.CREATE.{copy.name}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_stream(_name(config))
    await connection.violation("publish", f"$JS.API.STREAM.DELETE.{config.name}")


def _name(config: StreamConfig) -> str:
    assert config.name is not None
    return config.name


async def test_no_service_can_copy_the_sources_or_the_frames_into_a_stream_it_reads(
    secured_nats_server: EmbeddedNats,
) -> None:
    """A stream's sources are copied by the server, out of reach of subject permissions: no service may
    create, update or delete a stream, so none can make one copy the sealed sources or the frames."""
    server = secured_nats_server
    own: dict[str, StreamConfig] = {
        "ingest": FramesStream().config(),
        "inference": TracksStream().config(),
        "anonymiser": EventsStream().config(),
        "aggregation": DeadLetterStream("aggregation").config(),
        "registry": bucket_stream(SourcesBucket().config()),
        "audit": AuditStream().config(),
    }
    async with contextlib.AsyncExitStack() as stack:
        c = {s: await stack.enter_async_context(connected(server, s)) for s in SERVICES}
        kv = await c["registry"].nc.jetstream().key_value(SOURCES_BUCKET)
        await kv.put("north-gate", SEALED)
        attempts = []
        for service, config in own.items():
            config.sources = [StreamSource(name=STREAM), StreamSource(name="FRAMES")]
            config.max_msg_size = None
            attempts.append(_cannot_configure(c[service], config))
        await asyncio.gather(*attempts)

    admin = await nats.connect(server.url, user=server.admin.user, password=server.admin.password)
    try:
        for name in provisioned_stream_names():
            assert not (await admin.jetstream().stream_info(name)).config.sources, name
    finally:
        await admin.close()
