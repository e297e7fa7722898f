"""The boundary enforced by a real nats-server with Vigie's accounts, one user per service
(vigie_core.accounts, vigie_core.permissions): what each service must do works, across accounts; what it
must not is refused. The attacks a compromised service could try are in charts/tests/test_boundary_attacks.py.

nats-py reports a permission violation asynchronously, through the connection's error callback, and a
denied JetStream API request simply gets no answer. So each denied attempt is checked twice: the
server's violation message for that exact subject must arrive (waited for, with a deadline), and the
attacker must have received nothing while the legitimate consumer fetched the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from vigie_core.kv import NatsBucket
from vigie_core.messaging import StreamNotProvisionedError, connect, ensure_stream, jetstream_for
from vigie_core.permissions import POLICY_BUCKET, SERVICES, SOURCES_BUCKET, api_prefix, subject_matches
from vigie_core.settings import NatsSettings
from vigie_core.streams import (
    TRACKS_PREFIX,
    AuditStream,
    EventsStream,
    FramesStream,
    TracksStream,
    audit_subject,
    deadletter_subject,
    events_subject,
    frames_partition_filter,
    frames_subject,
    partition_filter,
    tracks_subject,
    views_subject,
)
from vigie_embedded.nats import EmbeddedNats, NatsCredentials
from vigie_proto.v1.views_pb2 import SceneViewResult

pytestmark = pytest.mark.integration

DENIED_REQUEST_TIMEOUT_S = 0.5
_VIOLATION = re.compile(
    r'permissions violation for (?P<operation>publish|subscription) to "(?P<subject>[^"]*)"'
)
VIOLATION_WITHIN_S = 3.0


@dataclass
class ServiceClient:
    """One service's connection, recording every error the server reports on it."""

    service: str
    nc: Client
    errors: list[str] = field(default_factory=list)
    received: list[Msg] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=DENIED_REQUEST_TIMEOUT_S)

    async def record(self, message: Msg) -> None:
        self.received.append(message)

    def _violated(self, operation: str, subject: str, pattern: bool) -> bool:
        for error in self.errors:
            found = _VIOLATION.search(error.lower())
            if found is None or found["operation"] != operation:
                continue
            if found["subject"] == subject.lower():
                return True
            if pattern and subject_matches(subject.lower(), found["subject"]):
                return True
        return False

    async def violation(self, operation: str, subject: str, *, pattern: bool = False) -> None:
        """Wait for the server's violation of ``operation`` ("publish" or "subscription") on ``subject``
        (or, with ``pattern``, on a subject it matches)."""
        wanted = f"{operation} to {subject!r}"
        deadline = asyncio.get_running_loop().time() + VIOLATION_WITHIN_S
        while not self._violated(operation, subject, pattern):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.service}: no violation of {wanted}; errors: {self.errors}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def connected(
    server: EmbeddedNats, service: str, *, inbox_prefix: str | None = None
) -> AsyncIterator[ServiceClient]:
    credentials: NatsCredentials = server.credentials(service)
    client: ServiceClient | None = None

    async def on_error(error: Exception) -> None:
        assert client is not None
        client.errors.append(str(error))

    nc = await nats.connect(
        server.url,
        user=credentials.user,
        password=credentials.password,
        inbox_prefix=inbox_prefix or credentials.inbox_prefix,
        error_cb=on_error,
        max_reconnect_attempts=0,
    )
    client = ServiceClient(service, nc)
    try:
        yield client
    finally:
        await nc.close()


def _durable(stream: str, consumer: str) -> ConsumerConfig:
    return ConsumerConfig(durable_name=consumer, ack_policy=AckPolicy.EXPLICIT)


async def _fetch_one(client: ServiceClient, subject: str, stream: str, durable: str) -> Msg:
    subscription = await client.js.pull_subscribe(
        subject, durable=durable, stream=stream, config=_durable(stream, durable)
    )
    [message] = await subscription.fetch(1, timeout=2)
    await message.ack()
    return message


def _js(client: ServiceClient, stream: str, timeout: float = 5.0) -> JetStreamContext:
    """The client's JetStream context that reaches ``stream`` (in its account, or imported)."""
    return client.nc.jetstream(prefix=api_prefix(client.service, stream), timeout=timeout)


async def test_each_service_can_do_what_it_must(secured_nats_server: EmbeddedNats) -> None:
    """The whole chain with each service's own user, across the accounts, and not one violation on the way."""
    server = secured_nats_server
    async with contextlib.AsyncExitStack() as stack:
        c = {s: await stack.enter_async_context(connected(server, s)) for s in SERVICES}

        # The registry writes the policy (in the bucket the provisioner created, in its account); ingest
        # is notified of the change and reads it from its own account.
        policy = await c["registry"].nc.jetstream().key_value(POLICY_BUCKET)
        for reader in ("ingest", "anonymiser"):
            bucket = NatsBucket(c[reader].nc, POLICY_BUCKET, api_prefix(reader, f"KV_{POLICY_BUCKET}"))
            changed: asyncio.Queue[str] = asyncio.Queue()
            stop = await bucket.listen(changed.put_nowait)
            await policy.put("cameras.north-gate", reader.encode())
            assert await asyncio.wait_for(changed.get(), 2) == "cameras.north-gate"
            entry = await bucket.get("cameras.north-gate")
            assert entry is not None
            assert entry.value == reader.encode()
            await stop()
        # The registry writes the sources bucket, in an account without users, and reads it back; ingest reads
        # it and is notified of its changes.
        changed = asyncio.Queue()
        ingest_sources = NatsBucket(c["ingest"].nc, SOURCES_BUCKET, "$JS.SOURCES.API")
        stop = await ingest_sources.listen(changed.put_nowait)
        sources = await c["registry"].nc.jetstream(prefix="$JS.SOURCES.API").key_value(SOURCES_BUCKET)
        revision = await sources.create("north-gate", b"sealed")
        assert (await sources.get("north-gate")).value == b"sealed"
        await sources.update("north-gate", b"sealed again", last=revision)
        [*_, entry] = await ingest_sources.read_all()
        assert entry.value == b"sealed again"
        assert await asyncio.wait_for(changed.get(), 2) == "north-gate"
        await stop()

        # The provisioner created every stream: each service binds its own (it may look it up and no more),
        # and records audit events on AUDIT under its own name.
        await ensure_stream(c["audit"].nc.jetstream(), AuditStream().config())
        for service in SERVICES:
            await c[service].nc.jetstream().publish(audit_subject(service), service.encode())

        # ingest -> FRAMES -> inference -> TRACKS -> anonymiser -> EVENTS -> aggregation.
        await ensure_stream(_js(c["ingest"], "FRAMES"), FramesStream().config())
        await ensure_stream(c["inference"].nc.jetstream(), FramesStream().config(), sized=False)
        await c["ingest"].nc.jetstream().publish(frames_subject("north-gate"), b"pixels")
        frame = await _fetch_one(c["inference"], frames_partition_filter(0), "FRAMES", "inference-0")
        assert frame.data == b"pixels"

        await ensure_stream(_js(c["inference"], "TRACKS"), TracksStream().config())
        await c["inference"].nc.jetstream().publish(tracks_subject("north-gate"), b"boxes and ids")
        tracks = await _fetch_one(
            c["anonymiser"], partition_filter(TRACKS_PREFIX, 0), "TRACKS", "anonymiser-0"
        )
        assert tracks.data == b"boxes and ids"

        await ensure_stream(_js(c["anonymiser"], "EVENTS"), EventsStream().config())
        await c["anonymiser"].nc.jetstream().publish(events_subject("north-gate"), b"3 people crossed")
        deadletters = StreamConfig(
            name="DEADLETTER_ANONYMISER",
            subjects=[deadletter_subject("anonymiser")],
            storage=StorageType.MEMORY,
        )
        await ensure_stream(c["anonymiser"].nc.jetstream(), deadletters)
        await c["anonymiser"].nc.jetstream().publish(deadletter_subject("anonymiser"), b"rejected")
        events = await _fetch_one(c["aggregation"], "vigie.events.*", "EVENTS", "aggregation")
        assert events.data == b"3 people crossed"

        subscription = await c["audit"].js.pull_subscribe("vigie.audit.*", durable="audit", stream="AUDIT")
        audited = await subscription.fetch(len(SERVICES), timeout=2)
        assert sorted(m.subject for m in audited) == sorted(audit_subject(s) for s in SERVICES)
        for message in audited:
            await message.ack()

        for client in c.values():
            await client.nc.flush()
            assert not client.errors, f"{client.service}: {client.errors}"


# (stream, the service that consumes it, its consumer, the service that publishes it)
STREAMS = {
    "FRAMES": ("inference", "inference-0", "ingest"),
    "TRACKS": ("anonymiser", "anonymiser-0", "inference"),
}


@contextlib.asynccontextmanager
async def _stream_with_a_consumer(server: EmbeddedNats, stream: str) -> AsyncIterator[ServiceClient]:
    """``stream`` holding two messages and its legitimate consumer, yielded ready to fetch."""
    consumer_service, durable, producer = STREAMS[stream]
    config = (FramesStream() if stream == "FRAMES" else TracksStream()).config()
    subject = frames_subject("cam") if stream == "FRAMES" else tracks_subject("cam")
    async with connected(server, producer) as publisher, connected(server, consumer_service) as consumer:
        await ensure_stream(_js(publisher, stream), config)
        for _ in range(2):
            await publisher.nc.jetstream().publish(subject, b"secret " + stream.encode())
        await consumer.js.add_consumer(stream, _durable(stream, durable))
        yield consumer


@pytest.mark.parametrize(
    ("attacker", "stream"),
    [
        ("aggregation", "FRAMES"),
        ("aggregation", "TRACKS"),
        ("anonymiser", "FRAMES"),
        ("ingest", "TRACKS"),
        ("registry", "FRAMES"),
        ("audit", "TRACKS"),
    ],
)
async def test_a_service_cannot_read_a_stream_it_does_not_consume(
    secured_nats_server: EmbeddedNats, attacker: str, stream: str
) -> None:
    consumer_service, durable, _ = STREAMS[stream]
    prefix = "vigie.frames" if stream == "FRAMES" else "vigie.tracks"
    async with (
        _stream_with_a_consumer(secured_nats_server, stream) as consumer,
        connected(secured_nats_server, attacker) as intruder,
    ):
        # Core subscriptions: to the stream's subjects, to everything, and to the inboxes where
        # JetStream delivers what the legitimate consumer fetches.
        consumer_inbox = secured_nats_server.credentials(consumer_service).inbox_prefix
        snooped = [f"{prefix}.>", ">", "_INBOX.>", f"{consumer_inbox}.>"]
        for subject in snooped:
            await intruder.nc.subscribe(subject, cb=intruder.record)
        # JetStream: a consumer of its own, the legitimate consumer, and a direct read of a message.
        attempts = [
            intruder.js.pull_subscribe(f"{prefix}.>", durable="intruder", stream=stream),
            _fetch_bound(intruder, stream, durable),
            intruder.js.get_msg(stream, 1),
            intruder.js.get_msg(stream, 1, direct=True),
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        assert all(isinstance(o, Exception) for o in outcomes), outcomes

        fetched = await (await consumer.js.pull_subscribe_bind(durable=durable, stream=stream)).fetch(1)
        assert fetched[0].data == b"secret " + stream.encode()

        for subject in snooped:
            await intruder.violation("subscription", subject)
        api = "$JS.API"
        for subject in (
            f"{api}.CONSUMER.INFO.{stream}.intruder",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"{api}.STREAM.MSG.GET.{stream}",
            f"{api}.DIRECT.GET.{stream}",
        ):
            await intruder.violation("publish", subject)
        await consumer.nc.flush()
        await asyncio.sleep(0.1)
        assert intruder.received == [], [m.subject for m in intruder.received]
        assert consumer.errors == []


async def _fetch_bound(client: ServiceClient, stream: str, durable: str) -> list[Msg]:
    subscription = await client.js.pull_subscribe_bind(durable=durable, stream=stream)
    return await subscription.fetch(1, timeout=DENIED_REQUEST_TIMEOUT_S)


@pytest.mark.parametrize(
    ("service", "subject"),
    [
        ("aggregation", frames_subject("cam")),  # inject frames
        ("anonymiser", tracks_subject("cam")),
        ("ingest", events_subject("cam")),  # forge counts
        ("inference", audit_subject("audit")),  # impersonate another service in the journal
        ("registry", "$JS.API.STREAM.DELETE.FRAMES"),
        ("anonymiser", "$JS.API.STREAM.CREATE.COPY_OF_TRACKS"),  # a new stream sourcing TRACKS
        ("inference", "$JS.API.CONSUMER.DELETE.FRAMES.inference-0"),
        ("ingest", "$KV.vigie-policy.cameras.north-gate"),  # only the registry writes the policy
    ],
)
async def test_a_service_cannot_publish_outside_its_lists(
    secured_nats_server: EmbeddedNats, service: str, subject: str
) -> None:
    async with connected(secured_nats_server, service) as client:
        await client.nc.publish(subject, b"x")
        await client.violation("publish", subject)


async def test_a_client_without_its_inbox_prefix_gets_no_replies(secured_nats_server: EmbeddedNats) -> None:
    """Why services must connect with ``inbox_prefix``: the shared ``_INBOX.`` namespace is closed."""
    async with connected(secured_nats_server, "ingest", inbox_prefix="_INBOX") as client:
        with pytest.raises(nats.errors.TimeoutError):
            await _js(client, "FRAMES", DENIED_REQUEST_TIMEOUT_S).stream_info("FRAMES")
        await client.violation("subscription", "_INBOX.*.*", pattern=True)


async def test_anonymous_clients_are_refused(secured_nats_server: EmbeddedNats) -> None:
    # Spoken by hand: nats-py leaves its socket open when the server refuses the connection.
    host, port = secured_nats_server.url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        writer.write(b'CONNECT {"verbose": false, "pedantic": false}\r\nPING\r\n')
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 2) == b"-ERR 'Authorization Violation'\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


def test_service_env_names_each_services_settings() -> None:
    server = EmbeddedNats(secured=True)
    server.url = "nats://127.0.0.1:4222"
    env = server.service_env("ingest")
    credentials = server.credentials("ingest")
    assert env == {
        "VIGIE_INGEST_NATS__URL": "nats://127.0.0.1:4222",
        "VIGIE_INGEST_NATS__USER": "ingest",
        "VIGIE_INGEST_NATS__PASSWORD": credentials.password,
    }
    assert len(credentials.password) >= 32
    assert EmbeddedNats(secured=True).credentials("ingest").password != credentials.password
    # The provisioner has no standing user: it exists only while it provisions.
    with pytest.raises(KeyError, match="no standing user for 'provisioner'"):
        server.credentials("provisioner")


async def test_a_service_connects_through_vigie_core_with_its_inbox_prefix(
    secured_nats_server: EmbeddedNats,
) -> None:
    """The services' own client (vigie_core.messaging.connect) must use the user's inbox prefix."""
    credentials = secured_nats_server.credentials("ingest")
    settings = NatsSettings(url=secured_nats_server.url, user=credentials.user, password=credentials.password)
    nc = await connect(settings, "vigie-ingest")
    try:
        await ensure_stream(
            jetstream_for(nc, settings, "ingest", "FRAMES", timeout=DENIED_REQUEST_TIMEOUT_S),
            FramesStream().config(),
            wait_s=DENIED_REQUEST_TIMEOUT_S,
        )
    except StreamNotProvisionedError:
        pytest.fail(
            "no reply under the shared _INBOX: vigie_core.messaging.connect must pass "
            "inbox_prefix=vigie_core.permissions.inbox_prefix(settings.user) to nats.connect"
        )
    finally:
        await nc.close()


async def test_inference_publishes_scene_views_it_cannot_read_back_within_the_streams_bounds(
    secured_nats_server: EmbeddedNats,
) -> None:
    """VIEWS, in the registry's account: inference publishes a camera's view into it and gets the broker's
    acknowledgement; a copy of the same request is dropped; a message over 256 KiB is refused; ingest and
    the anonymiser may not publish there; inference cannot read it back (no direct get, no consumer, no
    subscription); the registry reads the camera's latest view in its own account."""
    view = SceneViewResult(schema_version=1, camera_id="north-gate", request_id="r-1", policy_version=3)
    view.image.jpeg = b"\xff\xd8" + bytes(150_000)
    view.image.width, view.image.height = 416, 234
    subject, headers = views_subject("north-gate"), {"Nats-Msg-Id": "view-r-1"}
    async with contextlib.AsyncExitStack() as stack:
        c = {
            s: await stack.enter_async_context(connected(secured_nats_server, s))
            for s in ("inference", "registry", "ingest", "anonymiser")
        }
        inference = c["inference"].nc.jetstream(timeout=2)
        ack = await inference.publish(subject, view.SerializeToString(), headers=headers)
        assert (ack.stream, ack.duplicate) == ("VIEWS", None)
        again = await inference.publish(subject, view.SerializeToString(), headers=headers)
        assert (again.stream, again.seq, again.duplicate) == ("VIEWS", ack.seq, True)
        with pytest.raises(nats.js.errors.APIError, match="maximum"):
            await inference.publish(views_subject("north-gate"), bytes(256 * 1024 + 1))

        registry = c["registry"].nc.jetstream()
        assert (await registry.stream_info("VIEWS")).state.messages == 1
        stored = await registry.get_last_msg("VIEWS", subject, direct=True)
        assert SceneViewResult.FromString(stored.data or b"") == view

        for producer in ("ingest", "anonymiser"):
            await c[producer].nc.publish(subject, b"forged view")
            await c[producer].violation("publish", subject)

        intruder = c["inference"]
        await intruder.nc.subscribe("vigie.views.>", cb=intruder.record)
        attempts = [
            intruder.js.pull_subscribe("vigie.views.>", durable="intruder", stream="VIEWS"),
            intruder.js.add_consumer("VIEWS", durable_name="intruder", ack_policy=AckPolicy.EXPLICIT),
            intruder.js.get_msg("VIEWS", 1),
            intruder.js.get_msg("VIEWS", 1, direct=True),
            intruder.js.get_last_msg("VIEWS", subject, direct=True),
            _js_at(intruder, "$JS.REGISTRY.API").get_msg("VIEWS", 1, direct=True),
            _js_at(intruder, "$JS.REGISTRY.API").stream_info("VIEWS"),
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
        await intruder.violation("subscription", "vigie.views.>")
        for api in ("$JS.API", "$JS.REGISTRY.API"):
            await intruder.violation("publish", f"{api}.DIRECT.GET.VIEWS")
        await intruder.violation("publish", "$JS.API.CONSUMER.INFO.VIEWS.intruder")
        await intruder.violation("publish", "$JS.API.CONSUMER.DURABLE.CREATE.VIEWS.intruder")
        await inference.publish(views_subject("other"), b"still allowed")  # and heard by nobody
        await asyncio.sleep(0.1)
        assert intruder.received == [], [m.subject for m in intruder.received]


def _js_at(client: ServiceClient, prefix: str) -> JetStreamContext:
    return client.nc.jetstream(prefix=prefix, timeout=DENIED_REQUEST_TIMEOUT_S)
