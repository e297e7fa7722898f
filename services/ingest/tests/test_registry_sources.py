"""The registry's cameras at ingest, without NATS: reading an entry of the sources bucket (sealed, fail closed
per camera, never the URL in a message), the settings, sharding, the plan of changes, a camera set that
changes while it runs, and the follower that starts, replaces and stops cameras behind the policy gate and
audits it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink, action_name
from vigie_core.policy import StaticPolicies
from vigie_embedded.policies import camera_policy
from vigie_ingest import CameraConfig, CameraSet, CapturedFrame, InMemoryFrameSource
from vigie_ingest.directives import CameraControl
from vigie_ingest.policy_gate import PolicyGate
from vigie_ingest.registry_cameras import RegistryCameras, plan_changes
from vigie_ingest.registry_sources import (
    RegistrySource,
    SealedUrlOpener,
    SourceEntry,
    UnreadableSource,
    UnreadableSourceError,
    decode_source,
    in_shard,
    url_digest,
)
from vigie_ingest.settings import IngestSettings, RegistrySourcesSettings
from vigie_proto.v1.sources_pb2 import CameraSource

KEY = Fernet.generate_key().decode()
PASSWORD = "s3cret-rtsp"
URL = f"rtsp://viewer:{PASSWORD}@10.0.0.12:554/stream?token=abc123"
SETTINGS = RegistrySourcesSettings(enabled=True, source_key=KEY, loop=True, realtime=False)  # type: ignore[arg-type]
LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def entry(
    camera_id: str = "north-gate",
    url: str = URL,
    *,
    version: int = 7,
    key: str = KEY,
    schema_version: int = 1,
    named: str | None = None,
) -> bytes:
    source = CameraSource(
        schema_version=schema_version,
        camera_id=named or camera_id,
        version=version,
        sealed_url=Fernet(key.encode()).encrypt(url.encode()),
    )
    return source.SerializeToString()


def read(camera_id: str, payload: bytes, settings: RegistrySourcesSettings = SETTINGS) -> RegistrySource:
    return decode_source(camera_id, payload, SealedUrlOpener(KEY), settings)


# -- one entry ----------------------------------------------------------------------------------------------


def test_an_entry_is_opened_into_a_camera_configuration() -> None:
    source = read("north-gate", entry())
    assert (source.camera_id, source.version) == ("north-gate", 7)
    assert source.config.url == URL
    assert source.config.sample_fps == 5
    assert (source.config.loop, source.config.realtime) == (False, True), "file options are for files only"
    assert PASSWORD not in repr(source)
    assert "10.0.0.12" not in repr(source)
    assert source.digest == url_digest(URL)

    film = read("film", entry("film", "file:///videos/film.mp4"))
    assert (film.config.loop, film.config.realtime) == (True, False), "sources.loop and sources.realtime"


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        (b"\xff\xff garbage", "not_a_source", "not a vigie.v1.CameraSource message"),
        (entry(schema_version=2), "unknown_schema", "schema_version 2, this service reads 1 only"),
        (entry(named="south-gate"), "wrong_camera", "is the source of 'south-gate'"),
        (entry(key=Fernet.generate_key().decode()), "cannot_open", "does not open with sources.source_key"),
        (
            CameraSource(
                schema_version=1, camera_id="north-gate", sealed_url=b"not a token"
            ).SerializeToString(),
            "cannot_open",
            "does not open",
        ),
        (entry(url="rtsp:///no-host?token=abc123"), "unusable_url", "not one ingest reads"),
        (entry(url=f"ftp://viewer:{PASSWORD}@h/x"), "unusable_url", "not one ingest reads"),
    ],
)
def test_an_unreadable_entry_is_refused_by_name_without_its_url(
    payload: bytes, reason: str, words: str
) -> None:
    with pytest.raises(UnreadableSourceError) as raised:
        read("north-gate", payload)
    assert raised.value.reason == reason
    assert words in str(raised.value)
    for secret in (PASSWORD, "abc123", "no-host", "10.0.0.12"):
        assert secret not in str(raised.value)


def test_the_url_digest_leaves_credentials_out() -> None:
    assert url_digest(URL) == url_digest("rtsp://viewer:other@10.0.0.12:554/stream?token=zzz")
    assert url_digest(URL) == url_digest("rtsp://10.0.0.12:554/stream?token=")
    assert url_digest(URL) != url_digest("rtsp://10.0.0.13:554/stream?token=abc123")
    assert url_digest(URL) != url_digest("rtsp://10.0.0.12:554/other?token=abc123")
    assert len(url_digest(URL)) == 16


def test_sharding_puts_each_camera_on_exactly_one_replica_stably() -> None:
    cameras = [f"camera-{i}" for i in range(300)]
    for count in (1, 2, 3, 7):
        owners = [[i for i in range(count) if in_shard(c, i, count)] for c in cameras]
        assert all(len(o) == 1 for o in owners)
        if count > 1:
            shares = [sum(1 for o in owners if o == [i]) for i in range(count)]
            assert min(shares) > 300 / count / 2, shares
    assert [in_shard(c, 1, 3) for c in cameras] == [in_shard(c, 1, 3) for c in cameras]


def test_the_settings_need_the_key_and_a_shard_in_range(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RegistrySourcesSettings().enabled is False
    with pytest.raises(ValidationError, match=r"sources.enabled needs sources.source_key"):
        RegistrySourcesSettings(enabled=True)
    with pytest.raises(ValidationError, match=r"not a Fernet key") as raised:
        RegistrySourcesSettings(source_key="not-a-key")  # type: ignore[arg-type]
    assert "not-a-key" not in str(raised.value)
    with pytest.raises(ValidationError, match=r"shard_index must be below"):
        RegistrySourcesSettings(shard_index=2, shard_count=2)
    monkeypatch.setenv("VIGIE_INGEST_SOURCES__ENABLED", "true")
    monkeypatch.setenv("VIGIE_INGEST_SOURCES__SOURCE_KEY", KEY)
    settings = IngestSettings()
    assert settings.sources.enabled
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


# -- the plan ------------------------------------------------------------------------------------------------


def test_the_plan_starts_replaces_and_stops_and_ignores_new_versions_of_the_same_url() -> None:
    a, b, c = (read(i, entry(i, f"rtsp://h/{i}")) for i in ("a", "b", "c"))
    reading = {"a": a, "b": b, "gone": read("gone", entry("gone"))}
    entries: dict[str, SourceEntry] = {
        "a": read("a", entry("a", "rtsp://h/a", version=99)),  # a new version, the same URL
        "b": read("b", entry("b", "rtsp://h/b-moved", version=9)),
        "c": c,
    }
    changes = plan_changes(reading, entries)
    assert [s.camera_id for s in changes.start] == ["c"]
    assert [s.camera_id for s in changes.replace] == ["b"]
    assert changes.stop == ("gone",)
    assert changes.camera_ids == ["b", "c", "gone"]


def test_unreadable_static_and_foreign_cameras_are_not_read_from_the_registry() -> None:
    a = read("a", entry("a", "rtsp://h/a"))
    entries: dict[str, SourceEntry] = {
        "a": UnreadableSource("a", "cannot_open", "..."),
        "static": read("static", entry("static")),
        **{f"cam-{i}": read(f"cam-{i}", entry(f"cam-{i}")) for i in range(20)},
    }
    changes = plan_changes({"a": a}, entries, static_ids={"static"}, shard_index=1, shard_count=2)
    assert changes.stop == ("a",), "an entry that no longer opens stops the camera"
    started = {s.camera_id for s in changes.start}
    assert "static" not in started
    assert started == {f"cam-{i}" for i in range(20) if in_shard(f"cam-{i}", 1, 2)}
    assert 0 < len(started) < 20


# -- a camera set that changes while it runs --------------------------------------------------------------


def pictures(count: int = 1000) -> list[np.ndarray]:
    return [np.full((4, 4, 3), 9, np.uint8)] * count


class Collected:
    def __init__(self) -> None:
        self.frames: dict[str, list[CapturedFrame]] = {}

    async def publish(self, frame: CapturedFrame) -> None:
        self.frames.setdefault(frame.camera_id, []).append(frame)

    def count(self, camera_id: str) -> int:
        return len(self.frames.get(camera_id, []))


async def test_cameras_are_added_and_removed_while_the_others_run(wait_until) -> None:
    steady = InMemoryFrameSource("steady", pictures(), interval_s=0.01)
    cameras = CameraSet([steady])
    collected = Collected()
    running = asyncio.create_task(cameras.run(collected.publish, keep_open=True))
    await wait_until(lambda: collected.count("steady") > 3)
    await cameras.add(InMemoryFrameSource("added", pictures(), interval_s=0.01))
    await wait_until(lambda: collected.count("added") > 3)
    with pytest.raises(ValueError, match="already read"):
        await cameras.add(InMemoryFrameSource("added", pictures()))
    assert await cameras.remove("added")
    stopped_at = collected.count("added")
    assert "added" not in cameras.statuses()
    before = collected.count("steady")
    await asyncio.sleep(0.1)
    assert collected.count("added") == stopped_at, "a removed camera publishes nothing more"
    assert collected.count("steady") > before, "the others were not disturbed"
    assert [f.sequence for f in collected.frames["steady"]] == list(range(collected.count("steady")))
    assert not await cameras.remove("never-read")
    # A short file ending leaves an open set running, ready for more cameras.
    await cameras.add(InMemoryFrameSource("short", pictures(2)))
    await wait_until(lambda: collected.count("short") == 2)
    assert not running.done()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


# -- the follower behind the policy gate -----------------------------------------------------------------


class Readers:
    """In-memory cameras standing in for PyAV: what the follower started, with their controls."""

    def __init__(self) -> None:
        self.started: list[tuple[CameraConfig, CameraControl]] = []

    def __call__(self, config: CameraConfig, control: CameraControl) -> InMemoryFrameSource:
        self.started.append((config, control))
        return InMemoryFrameSource(config.id, [np.full((250, 416, 3), 200, np.uint8)] * 1000, interval_s=0.01)


async def follower_with(
    static: Sequence[CameraConfig] = (),
) -> tuple[
    RegistryCameras, CameraSet, PolicyGate, Readers, MemoryAuditSink, AuditPublisher, CollectorRegistry
]:
    registry = CollectorRegistry()
    policies = StaticPolicies([camera_policy("north-gate", masks=[LEFT_HALF]), camera_policy("static")])
    gate = PolicyGate(static, policies, registry)
    cameras = CameraSet()
    readers = Readers()
    sink = MemoryAuditSink()
    audit = AuditPublisher("ingest", sink, settings=AuditPublishSettings(drain_timeout_s=0.5))
    await audit.start()
    follower = RegistryCameras(
        cameras, gate, SETTINGS, make_source=readers, static=static, audit=audit, registry=registry
    )
    return follower, cameras, gate, readers, sink, audit, registry


async def test_the_follower_reads_the_registry_cameras_behind_the_gate_and_audits_without_urls(
    caplog: pytest.LogCaptureFixture, wait_until
) -> None:
    caplog.set_level(logging.DEBUG)
    static = CameraConfig(id="static", url="rtsp://admin:other-pass@10.0.0.2/s")
    follower, cameras, gate, readers, sink, audit, registry = await follower_with([static])
    try:
        view: dict[str, SourceEntry] = {
            "north-gate": read("north-gate", entry()),
            "static": read("static", entry("static", "rtsp://h/elsewhere")),
        }
        changes = await follower.apply(view)
        assert [s.camera_id for s in changes.start] == ["north-gate"], "the static camera wins"
        assert "both in this service's configuration" in caplog.text
        [(config, control)] = readers.started
        assert config.url == URL
        assert control is gate.controls["north-gate"]
        assert control.current.analyse, "its policy was read before it started"
        assert len(control.current.masks) == 1, "the policy's masks apply to a registry camera"
        collected = Collected()
        running = asyncio.create_task(cameras.run(collected.publish, keep_open=True))
        await wait_until(lambda: collected.count("north-gate") > 2)
        admitted = gate.admit(collected.frames["north-gate"][0])
        assert admitted is not None
        assert not admitted.pixels[:, :200].any(), "blanked like a static camera's frame"

        # The same URL in a new version: nothing happens.
        assert (await follower.apply({**view, "north-gate": read("north-gate", entry(version=8))})).empty
        # A new URL: replaced (a new run), then an unreadable entry: stopped.
        moved = "rtsp://viewer:n3w-pass@10.0.0.13/main"
        changes = await follower.apply(
            {**view, "north-gate": read("north-gate", entry(url=moved, version=9))}
        )
        assert [s.camera_id for s in changes.replace] == ["north-gate"]
        assert [c.url for c, _ in readers.started] == [URL, moved]
        changes = await follower.apply(
            {**view, "north-gate": UnreadableSource("north-gate", "cannot_open", "x")}
        )
        assert changes.stop == ("north-gate",)
        assert "north-gate" not in gate.controls
        assert "north-gate" not in cameras.statuses()
        assert registry.get_sample_value("vigie_ingest_registry_cameras") == 0
        assert (
            registry.get_sample_value("vigie_ingest_registry_camera_changes_total", {"change": "started"})
            == 1
        )
        assert (
            registry.get_sample_value("vigie_ingest_registry_camera_changes_total", {"change": "replaced"})
            == 1
        )
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await asyncio.sleep(0.05)  # let the audit publisher send

        events = sink.events()
        assert [action_name(e.action) for e in events] == ["config_update"] * 3
        started, replaced, stopped = events
        assert list(started.camera_ids) == ["north-gate"]
        assert started.details["started"] == "north-gate"
        assert [(r.kind, r.id) for r in started.records] == [
            ("camera_source", f"north-gate:{url_digest(URL)}")
        ]
        assert started.details["cameras_read"] == "2"
        assert replaced.details["replaced"] == "north-gate"
        assert replaced.records[0].id == f"north-gate:{url_digest(moved)}"
        assert stopped.details["stopped"] == "north-gate"
        assert stopped.details["from_registry"] == "0"
        text = "".join(str(e) for e in events) + caplog.text
        for secret in (PASSWORD, "n3w-pass", "other-pass", "abc123", "10.0.0.12", "10.0.0.13"):
            assert secret not in text, secret
    finally:
        await audit.close()
