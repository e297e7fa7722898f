"""Replicated streams (``stream_replicas``): a single nats-server takes one replica and refuses more; on a
real three-server JetStream cluster the provisioner creates or rescales every stream and bucket to three,
the services' stream checks accept them, one server going down loses nothing (memory streams included),
and the whole cluster restarting loses only what memory streams held."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from vigie_core.accounts import (
    JETSTREAM_INCLUDE,
    PROVISIONER_INCLUDE,
    accounts_conf,
    jetstream_conf,
    password_variable,
    provisioner_users,
)
from vigie_core.health import Readiness
from vigie_core.messaging import StreamGuard
from vigie_core.permissions import PROVISIONER, SERVICES
from vigie_core.provision import (
    ProvisionError,
    ProvisionSettings,
    provision,
    provision_at,
    provisioned_buckets,
    provisioned_streams,
)
from vigie_core.settings import NatsSettings
from vigie_core.streams import (
    EventsStream,
    FramesStream,
    TracksStream,
    bucket_stream,
    events_subject,
    frames_subject,
    provisioned_stream_names,
    tracks_subject,
)
from vigie_embedded.nats import EmbeddedNats, nats_server_binary, new_password
from vigie_embedded.processes import free_port, stop_process_group

pytestmark = pytest.mark.integration

SERVERS = 3
WAIT_S = 30.0


class JetStreamCluster:
    """Three nats-servers with JetStream, routed to each other on free ports of 127.0.0.1, each with its own
    storage; one can be stopped, killed and started again on the same ports and storage. ``config_file``:
    their configuration (``environment``: the variables it reads)."""

    def __init__(
        self,
        workdir: Path,
        servers: int = SERVERS,
        *,
        config_file: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self._workdir = workdir
        self._config_file = config_file
        self._environment = {**os.environ, **(environment or {})}
        self._client_ports = [free_port() for _ in range(servers)]
        self._monitoring_ports = [free_port() for _ in range(servers)]
        self._route_ports = [free_port() for _ in range(servers)]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * servers

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self._client_ports]

    def start(self, server: int) -> None:
        routes = ",".join(
            f"nats://127.0.0.1:{port}" for other, port in enumerate(self._route_ports) if other != server
        )
        command = [
            str(nats_server_binary()),
            *(["-c", str(self._config_file)] if self._config_file else []),
            *("-js", "-sd", str(self._workdir / f"n{server}"), "-a", "127.0.0.1"),
            *("-p", str(self._client_ports[server]), "-m", str(self._monitoring_ports[server])),
            *("--server_name", f"n{server}", "--cluster_name", "vigie"),
            *("--cluster", f"nats://127.0.0.1:{self._route_ports[server]}", "--routes", routes),
            *("-l", str(self._workdir / f"n{server}.log")),
        ]
        self._processes[server] = subprocess.Popen(
            command, start_new_session=True, stdin=subprocess.DEVNULL, env=self._environment
        )

    def stop(self, server: int, *, kill: bool = False) -> None:
        """Stop a server as a rolling restart does (SIGTERM), or as a crash would (``kill``: SIGKILL)."""
        process, self._processes[server] = self._processes[server], None
        if process is None:
            return
        if kill:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        else:
            stop_process_group(process, grace_s=10)

    def start_all(self) -> None:
        for server in range(len(self._processes)):
            self.start(server)
        self.wait_healthy()

    def stop_all(self) -> None:
        for server in range(len(self._processes)):
            self.stop(server)

    def wait_healthy(self) -> None:
        """Until every running server says JetStream is healthy (a meta leader, its streams current)."""
        deadline = time.monotonic() + WAIT_S
        for server, process in enumerate(self._processes):
            while process is not None and not self._healthy(server):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server n{server} is not healthy: {self.log_tail(server)}")
                time.sleep(0.05)

    def _healthy(self, server: int) -> bool:
        url = f"http://127.0.0.1:{self._monitoring_ports[server]}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, server: int) -> str:
        log = self._workdir / f"n{server}.log"
        return log.read_text()[-2000:] if log.is_file() else "(no log)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[JetStreamCluster]:
    servers = JetStreamCluster(tmp_path)
    try:
        servers.start_all()
        yield servers
    finally:
        servers.stop_all()


async def connect(cluster: JetStreamCluster) -> Client:
    # As the chart's services do: any server of the cluster, reconnecting to another when one goes.
    return await nats.connect(servers=cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        await asyncio.sleep(0.1)


async def replicated(js: JetStreamContext, replicas: int) -> None:
    """Until every stream of Vigie has ``replicas`` copies, all current (rescaling copies in the
    background)."""

    async def all_current() -> bool:
        for name in provisioned_stream_names():
            try:
                info = await js.stream_info(name)
            except (nats.errors.Error, TimeoutError):
                return False
            peers = info.cluster.replicas if info.cluster else None
            if len(peers or []) != replicas - 1 or not all(peer.current for peer in peers or []):
                return False
        return True

    await until(all_current, f"every stream at {replicas} current replicas")


async def publish(js: JetStreamContext, subject: str, payload: bytes) -> None:
    """Publish once the stream takes it (while a stream elects a new leader, nothing answers); a retry of a
    message stored without its acknowledgement reaching us is dropped by the server (its message id)."""
    deadline = time.monotonic() + WAIT_S
    headers = {"Nats-Msg-Id": f"{subject}/{payload.decode()}"}
    while True:
        try:
            await js.publish(subject, payload, timeout=0.5, headers=headers)
            return
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_the_replicas_size_every_stream_and_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    def replicas(settings: ProvisionSettings) -> set[int | None]:
        streams = [*provisioned_streams(settings), *map(bucket_stream, provisioned_buckets(settings))]
        assert [s.name for s in streams] == list(provisioned_stream_names())
        return {s.num_replicas for s in streams}

    # One by default: the embedded platform and a trial install run a single server.
    assert replicas(ProvisionSettings()) == {1}
    monkeypatch.setenv("VIGIE_PROVISION_STREAM_REPLICAS", "3")
    assert replicas(ProvisionSettings.load()) == {3}
    # What the services check a stream against is the definition, whatever the copies.
    assert FramesStream().config().num_replicas == 1

    monkeypatch.setenv("VIGIE_PROVISION_STREAM_REPLICAS", "2")
    with pytest.raises(
        ValueError, match=r"(?s)stream_replicas.*2 replicas survive no more servers down than 1"
    ):
        ProvisionSettings.load()


async def test_a_single_server_keeps_one_replica_and_refuses_more(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    for name in provisioned_stream_names():
        assert (await js.stream_info(name)).config.num_replicas == 1, name
    with pytest.raises(ProvisionError) as refused:
        await provision(client, ProvisionSettings(stream_replicas=3, wait_s=5), accounts=False)
    assert "3 replicas refused, this server is not clustered" in str(refused.value)
    assert "VIGIE_PROVISION_STREAM_REPLICAS=1" in str(refused.value)
    assert (await js.stream_info("FRAMES")).config.num_replicas == 1
    await client.close()


async def test_the_provisioner_rescales_a_cluster_and_the_services_accept_replicated_streams(
    cluster: JetStreamCluster,
) -> None:
    client = await connect(cluster)
    js = client.jetstream()
    single = await provision(client, ProvisionSettings(wait_s=WAIT_S), accounts=False)
    assert {r.outcome for r in single} == {"created"}

    rescaled = await provision(client, ProvisionSettings(stream_replicas=3, wait_s=WAIT_S), accounts=False)
    assert [(r.stream, r.outcome) for r in rescaled] == [
        (name, "updated (num_replicas)") for name in provisioned_stream_names()
    ]
    again = await provision(client, ProvisionSettings(stream_replicas=3, wait_s=WAIT_S), accounts=False)
    assert {r.outcome for r in again} == {"unchanged"}
    await replicated(js, 3)

    # More copies than servers: refused, saying why.
    with pytest.raises(ProvisionError, match="5 replicas refused, the cluster has fewer servers than that"):
        await provision(client, ProvisionSettings(stream_replicas=5, wait_s=WAIT_S), accounts=False)

    # The services check their streams against the definitions (one replica): the copies are the
    # provisioner's business, not a fault.
    readiness, registry, stop = Readiness(), CollectorRegistry(), asyncio.Event()
    guard = StreamGuard(readiness=readiness, registry=registry, stop=stop)
    for wanted in (FramesStream().config(), TracksStream().config(), EventsStream().config()):
        await guard.bind(js, wanted, wait_s=5)
    await guard.check()
    for name in ("FRAMES", "TRACKS", "EVENTS"):
        assert guard.fault(name) is None
        assert registry.get_sample_value("vigie_stream_fault", {"stream": name}) == 0
    assert not {k for k in readiness.failures() if k.startswith("stream ")}
    stop.set()
    await guard.close()
    await client.close()


async def test_one_server_crashing_loses_nothing_memory_streams_included(cluster: JetStreamCluster) -> None:
    client = await connect(cluster)
    js = client.jetstream()
    # FRAMES kept for a minute here, so that no frame expires during the test (5 s by default).
    settings = ProvisionSettings(stream_replicas=3, frames_max_age_s=60, wait_s=WAIT_S)
    assert {r.outcome for r in await provision(client, settings, accounts=False)} == {"created"}
    subjects = [frames_subject("north-gate"), tracks_subject("north-gate"), events_subject("north-gate")]
    for subject in subjects:
        await publish(js, subject, b"before")

    # The server leading FRAMES crashes: another takes over with every acknowledged message.
    leader = (await js.stream_info("FRAMES")).cluster
    assert leader is not None
    assert leader.leader is not None
    crashed = int(leader.leader.removeprefix("n"))
    cluster.stop(crashed, kill=True)
    for subject in subjects:
        await publish(js, subject, b"during")
    for name in ("FRAMES", "TRACKS", "EVENTS"):
        assert (await js.stream_info(name)).state.messages == 2, name

    # Back on its storage, it catches up: three current copies again.
    cluster.start(crashed)
    cluster.wait_healthy()
    await replicated(js, 3)
    assert (await js.stream_info("FRAMES")).state.messages == 2
    await client.close()


async def test_the_whole_cluster_restarting_loses_what_memory_streams_held(
    cluster: JetStreamCluster,
) -> None:
    client = await connect(cluster)
    js = client.jetstream()
    settings = ProvisionSettings(stream_replicas=3, frames_max_age_s=60, wait_s=WAIT_S)
    await provision(client, settings, accounts=False)
    for subject in (frames_subject("north-gate"), events_subject("north-gate")):
        await publish(js, subject, b"before")
    await js.add_consumer("FRAMES", ConsumerConfig(durable_name="inference-0", ack_policy=AckPolicy.EXPLICIT))

    cluster.stop_all()
    cluster.start_all()
    await replicated(js, 3)
    # The streams and their consumers are still defined (the cluster's metadata is on disk), the memory
    # streams empty.
    assert (await js.stream_info("FRAMES")).state.messages == 0
    assert (await js.stream_info("EVENTS")).state.messages == 1

    async def consumer_back() -> bool:
        try:
            return bool((await js.consumer_info("FRAMES", "inference-0")).name == "inference-0")
        except (nats.errors.Error, TimeoutError):  # not found, or its leader not elected yet
            return False

    await until(consumer_back, "the consumer inference-0 back")
    again = await provision(client, settings, accounts=False)
    assert {r.outcome for r in again} == {"unchanged"}
    await client.close()


async def test_vigies_accounts_hold_three_replicas_when_their_limits_count_the_copies(
    tmp_path: Path,
) -> None:
    """A cluster counts every copy of a stream against its account's JetStream limits: with the limits for
    one copy (jetstream_conf(1)) three replicas are refused, saying why; with those for three copies (the
    chart's files/nats-jetstream-r3.conf) every stream and bucket is created with three."""
    password = new_password()
    (tmp_path / "accounts.conf").write_text(accounts_conf())
    (tmp_path / PROVISIONER_INCLUDE).write_text(provisioner_users(password))
    (tmp_path / JETSTREAM_INCLUDE).write_text(jetstream_conf(1))
    (tmp_path / "server.conf").write_text("include accounts.conf\n")
    environment = {password_variable(service): new_password() for service in SERVICES}
    servers = JetStreamCluster(tmp_path, config_file=tmp_path / "server.conf", environment=environment)
    try:
        servers.start_all()
        nats_settings = NatsSettings(url=",".join(servers.urls), user=PROVISIONER, password=password)
        with pytest.raises(ProvisionError) as refused:
            await provision_at(nats_settings, ProvisionSettings(stream_replicas=3, wait_s=WAIT_S))
        assert "stream FRAMES: 3 replicas refused, no room for every copy in memory" in str(refused.value)
        assert "JetStream limits (vigie_core.accounts)" in str(refused.value)
    finally:
        servers.stop_all()
    (tmp_path / JETSTREAM_INCLUDE).write_text(jetstream_conf(3))
    (tmp_path / "sized").mkdir()
    servers = JetStreamCluster(
        tmp_path / "sized", config_file=tmp_path / "server.conf", environment=environment
    )
    try:
        servers.start_all()
        nats_settings = NatsSettings(url=",".join(servers.urls), user=PROVISIONER, password=password)
        created = await provision_at(nats_settings, ProvisionSettings(stream_replicas=3, wait_s=WAIT_S))
        assert {r.outcome for r in created} == {"created"}
    finally:
        servers.stop_all()
