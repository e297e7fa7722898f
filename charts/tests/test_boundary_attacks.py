"""The boundary against a compromised service: each role's NATS credentials in an attacker's hands, on a
real nats-server running exactly the configuration the chart renders (laid out as in the NATS pod).

For every role (the six services and the provisioner), the attacker tries every JetStream API verb
(stream and consumer create, update, delete, info, names, message get, direct get, pull next, push
consumers with a deliver subject, key-value put and get) under its own account's API and under every
other account's prefix, with the reply or deliver subject aimed at every class of subject of every
service: the data subjects (frames, tracks, events, each service's audit subject, the dead letters, both
buckets), each service's inbox, the shared inbox and a JetStream API subject. Core subscriptions to other
services' subjects and inboxes are tried too.

Each attempt is either **refused** (the server reports a permissions violation and does nothing) or
**executed**: then it is replayed alone and every place a message could land is watched (every stream of
every account, through the monitoring endpoint, and a connection of each service listening on its inbox
and its notifications). An executed attempt is **harmless** when whatever the server sent landed only in
the attacker's own inbox or on a subject the attacker may publish on anyway (its own channels), with data
the attacker may read anyway. Anything else is a breach, and the test fails naming it. Afterwards, every
stream is read by its owner and no frame, track, sealed source, policy or audit event may be anywhere it
must not be; no stream or consumer may have been created, deleted or changed in a way that breaks the
boundary.

``pytest charts/tests/test_boundary_attacks.py -s`` prints the attack matrix (role x verb x API account
-> outcomes, with the number of attempts).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamSource
from nats.js.errors import NotFoundError

from vigie_core.accounts import password_variable
from vigie_core.permissions import PROVISIONER, ROLES, SERVICES, account_name, inbox_prefix
from vigie_core.provision import provision_at
from vigie_core.settings import NatsSettings
from vigie_embedded.nats import EmbeddedNats

pytestmark = pytest.mark.integration

CAMERA = "cam"
# Markers in the payloads of what the system holds, to find them wherever they land.
PIXELS, TRACKS, EVENT, POLICY, SEALED = b"PIXELS!", b"TRACKID!", b"EVENT!", b"POLICY!", b"SEALED!"
VIEW = b"VIEW!"  # a scene view: what inference publishes for the registry, and may not read back
FRAME_BYTES = 416 * 234 * 3  # a frame as ingest publishes it

# Every stream, the account (service) that holds it, what it holds, and its stored subjects.
STREAMS: dict[str, tuple[str, bytes | None]] = {
    "FRAMES": ("inference", PIXELS),
    "TRACKS": ("anonymiser", TRACKS),
    "DEADLETTER_ANONYMISER": ("anonymiser", None),
    "CHECKPOINT_ANONYMISER": ("anonymiser", TRACKS),  # live track ids, as in TRACKS
    "EVENTS": ("aggregation", EVENT),
    "DEADLETTER_AGGREGATION": ("aggregation", None),
    "AUDIT": ("audit", None),
    "VIEWS": ("registry", VIEW),
    "KV_vigie-policy": ("registry", POLICY),
    "KV_vigie-sources": ("sources", SEALED),
}
# The durable consumers the services use.
DURABLES = {"FRAMES": "inference-0", "TRACKS": "anonymiser-0", "EVENTS": "aggregation", "AUDIT": "audit"}

# What each role may read anyway (the threat model's, written here independently of vigie_core): data it
# holds or is given by design.
READS: dict[str, set[bytes]] = {
    "ingest": {PIXELS, POLICY, SEALED},
    "inference": {PIXELS, TRACKS, POLICY},
    "anonymiser": {TRACKS, EVENT, POLICY},
    "aggregation": {EVENT},
    "registry": {POLICY, SEALED, VIEW},
    "audit": set(),
    PROVISIONER: set(),
}
# The streams each role may write anyway: those of its own account (which it alone reads) and those it
# publishes into (its channels).
WRITES: dict[str, set[str]] = {
    "ingest": {"FRAMES", "AUDIT"},
    "inference": {"FRAMES", "TRACKS", "VIEWS", "AUDIT"},
    "anonymiser": {"TRACKS", "DEADLETTER_ANONYMISER", "CHECKPOINT_ANONYMISER", "EVENTS", "AUDIT"},
    "aggregation": {"EVENTS", "DEADLETTER_AGGREGATION", "AUDIT"},
    "registry": {"VIEWS", "KV_vigie-policy", "KV_vigie-sources", "AUDIT"},
    # The journal's keeper reads every audit event and keeps the journal: trusted with AUDIT.
    "audit": {"AUDIT"},
    PROVISIONER: set(),
}

# Reply and deliver subjects aimed at every class of subject of every service.
TARGETS = [
    f"vigie.frames.{CAMERA}",
    f"vigie.tracks.{CAMERA}",
    f"vigie.events.{CAMERA}",
    f"vigie.views.{CAMERA}",
    *(f"vigie.audit.{service}" for service in SERVICES),
    "vigie.deadletter.anonymiser",
    "vigie.deadletter.aggregation",
    f"$KV.vigie-policy.{CAMERA}",
    f"$KV.vigie-sources.{CAMERA}",
    f"vigie.kv.vigie-policy.{CAMERA}",
    f"vigie.kv.vigie-sources.{CAMERA}",
    *(f"{inbox_prefix(role)}.attack" for role in ROLES),
    "_INBOX.attack",
    "$JS.API.STREAM.CREATE.EVIL",
]
APIS = ["$JS.API", *(f"$JS.{account_name(owner)}.API" for owner in (*ROLES, "sources"))]


# -- the broker as the chart renders it ------------------------------------------------------------------


@dataclass
class Listener:
    """A role's legitimate connection, recording what reaches its inbox and its notifications."""

    role: str
    nc: Client
    received: list[tuple[str, bytes]] = field(default_factory=list)

    async def record(self, message: Msg) -> None:
        self.received.append((message.subject, message.data))


@dataclass
class Broker:
    server: EmbeddedNats
    passwords: dict[str, str]
    listeners: dict[str, Listener] = field(default_factory=dict)

    async def connect(self, role: str, errors: list[str] | None = None, **options: Any) -> Client:
        async def on_error(error: Exception) -> None:
            if errors is not None:
                errors.append(str(error).lower())

        return await nats.connect(
            self.server.url,
            user=role,
            password=self.passwords[role],
            inbox_prefix=inbox_prefix(role),
            error_cb=on_error,
            max_reconnect_attempts=0,
            **options,
        )

    def jsz(self) -> dict[str, dict[str, Any]]:
        """Every stream of every account, with its configuration, state and consumers (monitoring port)."""
        url = f"{self.server.monitoring_url}/jsz?accounts=true&streams=true&consumers=true&config=true"
        with urllib.request.urlopen(url, timeout=5) as response:
            document = json.load(response)
        found = {}
        for account in document.get("account_details", []):
            for stream in account.get("stream_detail", []):
                found[f"{account['name']}/{stream['name']}"] = stream
        return found


@contextlib.asynccontextmanager
async def running_broker(
    rendering: Any, directory: Path, auth: Callable[[str], str] = str
) -> AsyncIterator[Broker]:
    """A nats-server on the rendered configuration (``auth``: a change made to auth.conf first), provisioned
    and seeded."""
    configmap = rendering.named("ConfigMap", "vigie-nats-auth")["data"]
    # As in the NATS pod: /etc/nats-config/nats.conf includes ../vigie-nats/auth.conf.
    (directory / "vigie-nats").mkdir()
    for name, text in configmap.items():  # auth.conf, and the includes beside it
        (directory / "vigie-nats" / name).write_text(auth(text) if name == "auth.conf" else text)
    (directory / "nats-config").mkdir()
    config = directory / "nats-config" / "nats.conf"
    config.write_text("include ../vigie-nats/auth.conf\n")
    passwords = {
        role: base64.b64decode(value).decode()
        for role, value in rendering.named("Secret", "vigie-nats-users")["data"].items()
    }
    environment = {password_variable(role): password for role, password in passwords.items()}
    with EmbeddedNats(config_file=config, provision=False, environment=environment) as server:
        # Provisioned as the chart's Job does it, as the user provisioner.
        await provision_at(NatsSettings(url=server.url, user=PROVISIONER, password=passwords[PROVISIONER]))
        broker = Broker(server, passwords)
        await seed(broker)
        try:
            yield broker
        finally:
            for listener in broker.listeners.values():
                await listener.nc.close()


@pytest.fixture
async def broker(render: Callable[[str], Any], tmp_path: Path) -> AsyncIterator[Broker]:
    async with running_broker(render("production"), tmp_path) as running:
        yield running


async def seed(broker: Broker) -> None:
    """What a running platform holds: frames, tracks, events, audit events, a policy and a sealed source,
    the services' consumers, and each role listening on its inbox and notifications."""
    c = {role: await broker.connect(role) for role in SERVICES}
    for name, described in broker.jsz().items():
        PROVISIONED[name.split("/", 1)[1]] = described["config"]
    policy = await c["registry"].jetstream().key_value("vigie-policy")
    await policy.put(CAMERA, POLICY + b" cam")
    sources = await c["registry"].jetstream(prefix="$JS.SOURCES.API").key_value("vigie-sources")
    await sources.put(CAMERA, SEALED + b" rtsp://...")
    for i in range(8):
        await c["ingest"].jetstream().publish(f"vigie.frames.{CAMERA}", PIXELS + bytes(FRAME_BYTES))
        await c["inference"].jetstream().publish(f"vigie.tracks.{CAMERA}", TRACKS + bytes([i]) * 64)
        await c["anonymiser"].jetstream().publish(f"vigie.events.{CAMERA}", EVENT + bytes([i]))
    await c["anonymiser"].jetstream().publish(f"vigie.checkpoint.anonymiser.0.{CAMERA}", TRACKS + b" state")
    await c["inference"].jetstream().publish(f"vigie.views.{CAMERA}", VIEW + b" jpeg")
    for role in SERVICES:
        await c[role].jetstream().publish(f"vigie.audit.{role}", f"AUDIT:{role}".encode())
    for stream, durable in DURABLES.items():
        owner = STREAMS[stream][0]
        # Explicit acks and a long ack wait: what an attacker pulls stays pulled, nothing is redelivered.
        await (
            c[owner]
            .jetstream()
            .add_consumer(stream, durable_name=durable, ack_policy="explicit", ack_wait=600)
        )
    for role, nc in c.items():
        listener = Listener(role, nc)
        await nc.subscribe(f"{inbox_prefix(role)}.>", cb=listener.record)
        notifications = {"ingest": ["vigie-policy", "vigie-sources"], "inference": ["vigie-policy"]}
        notifications["anonymiser"] = ["vigie-policy"]
        for bucket in notifications.get(role, []):
            await nc.subscribe(f"vigie.kv.{bucket}.>", cb=listener.record)
        await nc.flush()
        broker.listeners[role] = listener


# -- attempts --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One request of an attacker: a subject, a payload, the reply subject it names; ``verb`` and
    ``target`` for the matrix; ``carries``: the data the server would send on its behalf (None: an API
    reply, no stored message)."""

    verb: str
    subject: str
    payload: bytes
    reply: str | None
    target: str
    carries: bytes | None = None


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def attempts(role: str) -> list[Attempt]:
    own_inbox = f"{inbox_prefix(role)}.probe"
    found: list[Attempt] = []
    for api in APIS:
        for stream, (_, holds) in STREAMS.items():
            for index, target in enumerate(TARGETS):
                push = f"evil{index}"
                found += [
                    Attempt("STREAM.INFO", f"{api}.STREAM.INFO.{stream}", b"", target, target),
                    Attempt(
                        "STREAM.MSG.GET",
                        f"{api}.STREAM.MSG.GET.{stream}",
                        _json({"seq": 1}),
                        target,
                        target,
                        holds,
                    ),
                    Attempt(
                        "DIRECT.GET", f"{api}.DIRECT.GET.{stream}", _json({"seq": 1}), target, target, holds
                    ),
                    Attempt(
                        "DIRECT.GET (batch)",
                        f"{api}.DIRECT.GET.{stream}",
                        _json({"seq": 1, "batch": 4, "next_by_subj": ">"}),
                        target,
                        target,
                        holds,
                    ),
                    Attempt(
                        "CONSUMER.CREATE (push)",
                        f"{api}.CONSUMER.CREATE.{stream}.{push}",
                        _json({"stream_name": stream, "config": {"name": push, "deliver_subject": target}}),
                        own_inbox,
                        target,
                        holds,
                    ),
                ]
                if stream in DURABLES:
                    found.append(
                        Attempt(
                            "CONSUMER.MSG.NEXT",
                            f"{api}.CONSUMER.MSG.NEXT.{stream}.{DURABLES[stream]}",
                            _json({"batch": 1, "no_wait": True}),
                            target,
                            target,
                            holds,
                        )
                    )
            copies = [StreamSource(name=other) for other in STREAMS if other != stream]
            found += [
                Attempt(
                    "STREAM.CREATE",
                    f"{api}.STREAM.CREATE.EVIL",
                    _config("EVIL", copies, "file"),
                    own_inbox,
                    "-",
                ),
                # The stream as it is, but copying every other (and, for FRAMES, keeping frames for ever).
                Attempt(
                    "STREAM.UPDATE (copy)",
                    f"{api}.STREAM.UPDATE.{stream}",
                    _evil(stream, copies),
                    own_inbox,
                    "-",
                ),
                Attempt(
                    "STREAM.UPDATE (disk)", f"{api}.STREAM.UPDATE.{stream}", _on_disk(stream), own_inbox, "-"
                ),
                Attempt("STREAM.DELETE", f"{api}.STREAM.DELETE.{stream}", b"", own_inbox, "-"),
                Attempt("STREAM.PURGE", f"{api}.STREAM.PURGE.{stream}", b"", own_inbox, "-"),
            ]
            if stream in DURABLES:
                found.append(
                    Attempt(
                        "CONSUMER.DELETE",
                        f"{api}.CONSUMER.DELETE.{stream}.{DURABLES[stream]}",
                        b"",
                        own_inbox,
                        "-",
                    )
                )
        for target in TARGETS:
            found.append(Attempt("STREAM.NAMES", f"{api}.STREAM.NAMES", b"{}", target, target))
    for bucket in ("vigie-policy", "vigie-sources"):
        subject = f"$KV.{bucket}.{CAMERA}"
        found.append(Attempt("KV put", subject, b"forged by " + role.encode(), own_inbox, subject))
    return found


# Each stream's subjects and storage, as provisioned: an update keeping them is one the server may accept.
PROVISIONED: dict[str, dict[str, Any]] = {}


def _config(name: str, sources: list[StreamSource], storage: str) -> bytes:
    return _json(
        {
            "name": name,
            "subjects": [f"evil.{name}"],
            "storage": storage,
            "sources": [s.as_dict() for s in sources],
        }
    )


def _evil(stream: str, sources: list[StreamSource]) -> bytes:
    config = {**PROVISIONED[stream], "sources": [s.as_dict() for s in sources]}
    if stream == "FRAMES":
        config["max_age"] = 0
    return _json(config)


def _on_disk(stream: str) -> bytes:
    return _json({**PROVISIONED[stream], "storage": "file"})


# -- the attack ------------------------------------------------------------------------------------------


@dataclass
class Landing:
    """Where one executed attempt's messages went."""

    streams: list[tuple[str, str, int]]  # (account/stream, stored subject prefix, messages)
    listeners: list[tuple[str, str]]  # (role, subject)


def _violations(errors: Iterable[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for error in errors:
        if "permissions violation for publish" in error and ' to "' in error:
            found[error.split(' to "', 1)[1].split('"', 1)[0]] += 1
    return found


async def refused_subjects(broker: Broker, role: str, subjects: list[str]) -> set[str]:
    """The request subjects the server refuses to ``role`` (each sent once, replies to its own inbox)."""
    errors: list[str] = []
    nc = await broker.connect(role, errors)
    probe = f"{inbox_prefix(role)}.probe"
    await nc.subscribe(f"{probe}.>")
    for subject in subjects:
        await nc.publish(subject, b"", reply=f"{probe}.x")
    await nc.flush()
    # Violations come back asynchronously, in order: a last refused publish marks the end.
    await nc.publish("vigie.never.allowed", b"")
    for _ in range(300):
        if "vigie.never.allowed" in _violations(errors):
            break
        await asyncio.sleep(0.01)
    await nc.close()
    refused = {s for s in _violations(errors) if s != "vigie.never.allowed"}
    return {s for s in subjects if s.lower() in refused}


def _snapshot(broker: Broker) -> tuple[dict[str, int], dict[str, int]]:
    streams = {name: stream["state"]["last_seq"] for name, stream in broker.jsz().items()}
    return streams, {role: len(listener.received) for role, listener in broker.listeners.items()}


async def execute(broker: Broker, nc: Client, attempt: Attempt) -> Landing:
    before_streams, before_listeners = _snapshot(broker)
    await nc.publish(attempt.subject, attempt.payload, reply=attempt.reply or "")
    await nc.flush()
    # The server's deliveries take microseconds, a stream made to copy another fills in the background:
    # the streams must be still before the next attempt, or what this one caused is put on that one (the
    # final read catches laggards anyway).
    after_streams, _ = _snapshot(broker)
    for _ in range(50):
        await asyncio.sleep(0.02)
        settled, _ = _snapshot(broker)
        if settled == after_streams:
            break
        after_streams = settled
    stored = []
    for name, last in after_streams.items():
        if last > before_streams.get(name, 0):
            stored.append((name, "?", last - before_streams.get(name, 0)))
    heard = []
    for role, listener in broker.listeners.items():
        for subject, _ in listener.received[before_listeners[role] :]:
            heard.append((role, subject))
    return Landing(stored, heard)


def judge(role: str, attempt: Attempt, landing: Landing, reconfigured: Collection[str] = ()) -> str | None:
    """Why this landing is a breach, or None when it is harmless: whatever the server sent landed only in the
    attacker's own inbox or in a stream it may write anyway, with data it may read anyway. ``reconfigured``:
    streams the provisioner made copy others of their account earlier (accepted, see `attack`), which fill
    in the background, whatever attempt runs then."""
    if (
        attempt.carries is not None
        and attempt.carries not in READS[role]
        and (landing.streams or landing.listeners)
    ):
        return f"the server handed {role} data it may not read ({attempt.carries!r})"
    for listener, subject in landing.listeners:
        if listener == role:
            continue
        if subject.startswith("vigie.kv.") and role == "registry":
            continue  # the registry writing a bucket: readers are notified, as for any of its writes
        return f"reached {listener}'s {subject}"
    for name, _, _ in landing.streams:
        if name.split("/", 1)[1] not in WRITES[role] and name not in reconfigured:
            return f"stored in {name}"
    return None


async def attack(broker: Broker, role: str) -> tuple[dict[tuple[str, str], Counter[str]], list[str]]:
    """Every attempt of ``role``: the matrix rows (verb, API account) -> outcomes, and the breaches."""
    planned = attempts(role)
    refused = await refused_subjects(broker, role, sorted({a.subject for a in planned}))
    matrix: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    breaches: list[str] = []
    nc = await broker.connect(role)
    reconfigured: set[str] = set()
    for attempt in planned:
        api = attempt.subject.split(".")[1] if attempt.subject.startswith("$JS.") else "-"
        row = (attempt.verb, "own" if api == "API" else api)
        if attempt.subject in refused:
            matrix[row]["refused"] += 1
            continue
        before = broker.jsz()
        landing = await execute(broker, nc, attempt)
        breach = judge(role, attempt, landing, reconfigured)
        after = broker.jsz()
        changes = changed_streams(before, after)
        if breach is not None:
            breaches.append(f"{role}: {attempt.verb} {attempt.subject} -> {attempt.target}: {breach}")
            matrix[row]["BREACH"] += 1
        elif changes and role != PROVISIONER:
            breaches += [f"{role}: {attempt.verb} {attempt.subject}: {change}" for change in changes]
            matrix[row]["BREACH"] += 1
        elif changes:
            # The provisioner configures streams: what it changed stays in the stream's account (checked by
            # the markers below), and the services flag it (vigie_core.messaging.StreamGuard).
            matrix[row]["accepted: " + "; ".join(changes)] += 1
            reconfigured.update(n for n in after if n in before and after[n]["config"] != before[n]["config"])
        elif landing.streams or any(r == role for r, _ in landing.listeners):
            matrix[row]["executed: landed in its own inbox or channels"] += 1
        else:
            matrix[row]["executed: nothing delivered"] += 1
    await nc.close()
    return matrix, breaches


def changed_streams(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Streams or consumers created or deleted, streams changed to copy from elsewhere, to store on disk or
    to keep frames for ever."""
    found = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            found.append(f"deleted {name}")
            continue
        if name not in before:
            found.append(f"created {name}")
            continue
        config, was = after[name]["config"], before[name]["config"]
        if (config.get("sources") or config.get("mirror")) and not (was.get("sources") or was.get("mirror")):
            found.append(f"{name} made to copy {[s['name'] for s in config.get('sources', [])]}")
        if config.get("storage") != was.get("storage"):
            found.append(f"{name} storage changed to {config.get('storage')}")
        if config.get("max_age") != was.get("max_age"):
            found.append(f"{name} retention changed to {config.get('max_age')} ns")
        durables = {
            c["name"] for c in before[name].get("consumer_detail", []) if c["name"] in DURABLES.values()
        }
        left = {c["name"] for c in after[name].get("consumer_detail", [])}
        if durables - left:
            found.append(f"consumers deleted on {name}: {sorted(durables - left)}")
    return found


async def stored_markers(broker: Broker) -> list[tuple[str, str, bytes]]:
    """Every message of every readable stream, read by its owner: (stream, subject, payload head). AUDIT, a
    work queue, through the journal's own consumer (what an attacker pulled from it stays pending); VIEWS,
    which its owner reads without a consumer, by direct gets."""
    found = []
    nc = await broker.connect("registry")
    try:
        js = nc.jetstream()
        state = (await js.stream_info("VIEWS")).state
        for seq in range(state.first_seq, state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                kept = await js.get_msg("VIEWS", seq, direct=True)
                found.append(("VIEWS", kept.subject or "", (kept.data or b"")[:24]))
    finally:
        await nc.close()
    readers = {"FRAMES": "inference", "TRACKS": "anonymiser", "EVENTS": "aggregation", "AUDIT": "audit"}
    for stream, role in readers.items():
        nc = await broker.connect(role)
        try:
            js = nc.jetstream()
            if stream == "AUDIT":
                subscription = await js.pull_subscribe_bind(durable=DURABLES[stream], stream=stream)
            else:
                subscription = await js.pull_subscribe(">", stream=stream, durable=f"check-{stream.lower()}")
            # nats-py raises its own TimeoutError or asyncio's, depending on when the wait ends.
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                while True:
                    for message in await subscription.fetch(64, timeout=0.3):
                        found.append((stream, message.subject, message.data[:24]))
        finally:
            await nc.close()
    return found


def misplaced(role: str, stored: list[tuple[str, str, bytes]]) -> list[str]:
    """Data found in a stream that may not hold it (the streams the attacker writes anyway apart, for data it
    reads anyway; for the provisioner, which may make a stream copy another of its account, data of a stream
    of that same account), and audit events stored under another service's subject than their author's."""
    found = []
    for stream, subject, head in stored:
        owner = STREAMS[stream][0]
        for marker in (PIXELS, TRACKS, EVENT, POLICY, SEALED, VIEW):
            if not head.startswith(marker) or STREAMS[stream][1] == marker:
                continue
            same_account = role == PROVISIONER and (owner, marker) in STREAMS.values()
            if not (stream in WRITES[role] and marker in READS[role]) and not same_account:
                found.append(f"{role}: {marker!r} found in {stream} on {subject}")
        if stream == "AUDIT" and subject.startswith("vigie.audit.") and role != "audit":
            claimed = subject.removeprefix("vigie.audit.")
            if claimed != role and head != f"AUDIT:{claimed}".encode():
                found.append(f"{role}: something stored as {claimed}'s audit event ({head!r})")
    return found


# -- the tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_a_compromised_role_can_neither_receive_nor_store_what_it_must_not(
    broker: Broker, role: str, capsys: pytest.CaptureFixture[str], pytestconfig: pytest.Config
) -> None:
    matrix, breaches = await attack(broker, role)
    await asyncio.sleep(0.5)  # anything a changed stream would copy has time to arrive
    for listener in broker.listeners.values():
        if listener.role == role:
            continue
        for subject, data in listener.received:
            for marker in (PIXELS, TRACKS, SEALED, EVENT, VIEW):
                if data.startswith(marker) and marker not in READS[listener.role]:
                    breaches.append(f"{role}: {marker!r} reached {listener.role} on {subject}")
    # Read last: the owners' reads land in their inboxes, where the listeners hear them too.
    breaches += misplaced(role, await stored_markers(broker))
    # Whatever the provisioner may change, nothing in the accounts holding pixels and tracks is on disk.
    for name, stream in broker.jsz().items():
        if name.split("/")[0] in ("INFERENCE", "ANONYMISER"):
            assert stream["config"]["storage"] == "memory", name
    if pytestconfig.getoption("capture") == "no":  # -s: the matrix, for whoever asks
        with capsys.disabled():
            print(f"\n{role}:\n" + _table(matrix))
    assert breaches == [], "\n".join(breaches)
    # Not a vacuous pass: every attempt ran, and most were refused outright by the broker.
    total = sum(sum(c.values()) for c in matrix.values())
    refused = sum(c["refused"] for c in matrix.values())
    assert total == len(attempts(role))
    assert refused > total * 0.9, (refused, total)


def _table(matrix: dict[tuple[str, str], Counter[str]]) -> str:
    lines = ["| verb | API account | outcomes |", "|---|---|---|"]
    for (verb, account), outcomes in sorted(matrix.items()):
        text = ", ".join(f"{outcome} ({count})" for outcome, count in sorted(outcomes.items()))
        lines.append(f"| {verb} | {account} | {text} |")
    return "\n".join(lines)


@pytest.mark.parametrize("role", ROLES)
async def test_a_compromised_role_cannot_listen_elsewhere(broker: Broker, role: str) -> None:
    """Core subscriptions to the data subjects, to everything, to the shared and other roles' inboxes are
    refused, and nothing arrives meanwhile while the platform's own traffic flows."""
    errors: list[str] = []
    nc = await broker.connect(role, errors)
    heard: list[str] = []

    async def record(message: Msg) -> None:
        heard.append(message.subject)

    subjects = [
        ">",
        "vigie.>",
        "$KV.>",
        "_INBOX.>",
        "$JS.>",
        *(f"{inbox_prefix(r)}.>" for r in ROLES if r != role),
    ]
    for subject in subjects:
        await nc.subscribe(subject, cb=record)
    ingest = await broker.connect("ingest")
    await ingest.jetstream().publish(f"vigie.frames.{CAMERA}", PIXELS + bytes(FRAME_BYTES))
    inference = await broker.connect("inference")
    pulled = await inference.jetstream().pull_subscribe_bind(durable="inference-0", stream="FRAMES")
    await pulled.fetch(1, timeout=2)
    await nc.flush()
    await asyncio.sleep(0.3)
    refused = [e for e in errors if "permissions violation for subscription" in e]
    assert len(refused) == len(subjects), errors
    assert heard == []
    for client in (nc, ingest, inference):
        await client.close()


def _with_a_hole(auth: str) -> str:
    """The rendered accounts with one crossing added: the registry exporting the policy bucket's subjects as
    a service, imported by the aggregation (the hole of a single account, where every subject is shared)."""

    def in_account(text: str, account: str, key: str, entry: str) -> str:
        start = text.index(f"\n  {account}: {{")
        end = text.index("\n  }", start)
        block = text[start:end].replace(f"    {key}: [", f"    {key}: [{entry}, ", 1)
        return text[:start] + block + text[end:]

    auth = in_account(auth, "REGISTRY", "exports", '{service: "$KV.vigie-policy.>"}')
    return in_account(
        auth, "AGGREGATION", "imports", '{service: {account: "REGISTRY", subject: "$KV.vigie-policy.>"}}'
    )


async def test_the_attack_finds_a_confused_deputy_where_there_is_one(
    render: Callable[[str], Any], tmp_path: Path
) -> None:
    """The suite can fail: with that one crossing more, the aggregation (whose user may not publish on the
    bucket) makes the server overwrite a camera's policy with a JetStream API reply, as it could when all
    services shared an account."""
    async with running_broker(render("production"), tmp_path, _with_a_hole) as weakened:
        _, breaches = await attack(weakened, "aggregation")
    assert any("stored in REGISTRY/KV_vigie-policy" in breach for breach in breaches), breaches
