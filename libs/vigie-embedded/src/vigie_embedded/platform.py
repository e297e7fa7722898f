"""The whole platform on one machine: a local nats-server and tritonserver, every service as a local
process with its own NATS user, SQLite databases in a state folder, and one video as a camera.

The demo (``vigie_embedded.demo``), the end-to-end tests and the latency benchmark all run this, so what
they show is what a city gets from the embedded defaults. Only two settings differ from a production
camera, both written down where they are set: a one-minute reporting window (the sample film lasts a
minute; docs/privacy.md rule 11 asks for a written justification, given below) and short idle and release
delays, so that the figures of the film are published within a minute of its end.

The camera is declared the way a city declares one: through the registry's admin API (purpose, legal
basis, DPIA reference, counting lines, reporting window with its justification), then activated. The
registry publishes its policy to the bucket ``vigie-policy``, and ingest, inference and the anonymiser
follow it (``policy.enabled`` is left at its default): the lines and window the anonymiser counts with
come from there, and an objection on the camera's public page pauses it. Ingest is given no camera: the
registry hands it the camera's source, sealed with the registry's key, through the bucket
``vigie-sources`` that only ingest may read, and ingest starts reading it from there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import av
import httpx
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from vigie_core.auth import LocalTokenIssuer
from vigie_core.policy import DECISION_CAUSES
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.processes import ProcessSet
from vigie_embedded.triton import EmbeddedTriton

__all__ = [
    "CAMERA_ID",
    "DEMO_GEOMETRY",
    "DEMO_PURPOSE",
    "SITE_ID",
    "ZONE_CAMERA_ID",
    "ZONE_GEOMETRY",
    "EmbeddedPlatform",
    "FilmProgress",
    "PlatformFailedError",
    "PlatformOptions",
    "Samples",
    "film_duration_s",
    "scrape",
    "total",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# Why the policy refused a frame (vigie_core.policy): the reasons inference and the anonymiser count.
POLICY_CAUSES = DECISION_CAUSES[1:]

CAMERA_ID = "sample"
SITE_ID = "demo"

# The sample film is shot from a tram driving down a street: people drift outwards from the middle of the
# picture, across these lines (normalised image coordinates, y downwards).
DEMO_GEOMETRY: dict[str, Any] = {
    "lines": [
        {"id": "left", "start": [0.35, 0.3], "end": [0.35, 1.0]},
        {"id": "right", "start": [0.65, 0.3], "end": [0.65, 1.0]},
        {"id": "low", "start": [0.0, 0.8], "end": [1.0, 0.8]},
    ],
}
WINDOW_JUSTIFICATION = (
    "embedded demonstration on a one-minute sample film: a 20-minute window would publish nothing "
    "until twenty minutes after the film; not for a camera in a public space"
)
# The camera's one purpose (docs/privacy.md rule 1). The film shows people far more than vehicles (about 20
# people cross the lines, one vehicle), so: pedestrian flow, whose only output is line crossings of
# people. That purpose measures no zone (the registry refuses one, rule 7), so the demo has none; a zone
# needs occupancy_statistics (and no lines) or traffic_flow_statistics (vehicles only).
DEMO_PURPOSE = "pedestrian_flow_statistics"
# The optional second camera (``PlatformOptions.zone_camera``): the same film declared under
# occupancy_statistics, with one zone over the pavements and the street in front of the tram, where people
# walk for several seconds: occupancy and stays in that zone.
ZONE_CAMERA_ID = "sample-zone"
ZONE_PURPOSE = "occupancy_statistics"
ZONE_GEOMETRY: dict[str, Any] = {
    "zones": [{"id": "street", "polygon": [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]}],
    "dwell_buckets_s": [5, 15, 60],
}
ADMIN_MOTIVE = "embedded platform: declaring the demonstration camera"

# In start order: the audit service creates AUDIT before the others record anything (they would buffer
# and retry otherwise); the registry publishes the camera's policy before any service needs it; consumers
# start before producers; the ports are the services' /metrics and APIs.
_ORDER = ("audit", "registry", "aggregation", "anonymiser", "inference", "ingest")


@dataclass(frozen=True)
class PlatformOptions:
    video: Path
    model_repository: Path
    state_dir: Path = Path("var/embedded")
    sample_fps: float = 5.0
    # The film is played at its own pace, as a camera delivers frames: FRAMES keeps them seconds, as in
    # production, so frames read faster than they are analysed would expire there.
    realtime: bool = True
    window_s: int = 60
    # docs/privacy.md rule 12: counts from 1 to threshold-1 are suppressed (11 for persons, INSEE's rule).
    threshold: int = 11
    # A window is released this long after it ends: longer than the anonymiser takes to close a camera's
    # part of it when the film ends with the window (camera_idle_s + 2), or that part would come too late
    # to be published (a part stored after its window was released is never published).
    release_delay_s: float = 10.0
    camera_idle_s: float = 4.0
    # Start the camera when a reporting window begins, so that a film shorter than a window is not split
    # between two windows (each half of its counts could then be too small to publish).
    align_to_window: bool = False
    # How long the objection button pauses the camera (the registry's default is 15 minutes).
    objection_pause_s: int = 900
    # A second camera on the same film, under occupancy_statistics with a zone (ZONE_CAMERA_ID): the demo
    # camera's purpose measures no zone, so the zone figures need it.
    zone_camera: bool = False
    # SQLAlchemy URLs replacing the SQLite files of some databases ("statistics", "audit", "registry"),
    # e.g. PostgreSQL behind a proxy that a chaos run cuts (vigie_embedded.chaos).
    databases: tuple[tuple[str, str], ...] = ()

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return (CAMERA_ID, ZONE_CAMERA_ID) if self.zone_camera else (CAMERA_ID,)


def _private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def film_duration_s(video: Path) -> float:
    """How long the film lasts (its frames' capture times span this from when ingest opens it)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / av.time_base


def scrape(client: httpx.Client, url: str) -> Samples:
    """Every sample a service's /metrics shows, by name and labels (empty when it does not answer)."""
    try:
        text = client.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (metric, have), value in samples.items() if metric == name and wanted <= have)


def _free_ports(count: int) -> list[int]:
    """Distinct free ports: the sockets are held together while the system picks them, so that no port is
    handed out twice (one at a time, a port just released may come back)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class PlatformFailedError(RuntimeError):
    """A service stopped, the camera failed, or the film was not counted in time."""


@dataclass
class FilmProgress:
    """How far the film went, read from the services' /metrics (never from FRAMES or TRACKS)."""

    camera_state: str = "starting"
    frames_decoded: int = 0
    frames_published: int = 0
    frames_analysed: int = 0
    # Published by ingest but not analysed (the policy forbade it by then: a pause, ...).
    frames_not_analysed: int = 0
    frames_counted: int = 0
    frames_not_counted: int = 0
    analysed_per_second: float = 0.0
    # Reporting windows the anonymiser closed and reported. No count of people or vehicles: the services
    # expose none, and the demo shows only what the statistics API publishes.
    windows_closed: int = 0
    reports_stored: int = 0
    # When ingest opened the film (Unix seconds; the latest of the cameras): its frames' capture times are
    # this plus their own (ingest's vigie_ingest_camera_opened_timestamp_seconds).
    opened_by: float = 0.0
    first_analysed_at: float = 0.0

    @property
    def counted(self) -> bool:
        """Decoded to the end, and every frame sent was analysed and counted (or refused by the policy)."""
        return (
            self.camera_state == "finished"
            and self.frames_analysed + self.frames_not_analysed >= self.frames_published > 0
            and self.frames_counted + self.frames_not_counted >= self.frames_analysed
        )


class EmbeddedPlatform:
    """Starts everything on ``__enter__`` and stops it, in reverse order, on ``__exit__``."""

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options
        self.urls = {
            service: f"http://127.0.0.1:{port}"
            for service, port in zip(_ORDER, _free_ports(len(_ORDER)), strict=True)
        }
        self._auth_key = Ed25519PrivateKey.generate()
        self.issuer = LocalTokenIssuer(self._auth_key, issuer="vigie-embedded", audience="vigie")
        self._audit_key = Ed25519PrivateKey.generate()
        # The registry's secrets, drawn per run: objection receipts' HMAC key, the sources' sealing key.
        self._receipt_key = secrets.token_urlsafe(32)
        self._source_key = Fernet.generate_key().decode()
        self.logs = options.state_dir / "logs"
        self.processes = ProcessSet(self.logs)
        self.nats: EmbeddedNats | None = None
        self.triton: EmbeddedTriton | None = None
        # Before ingest starts: no frame's capture time is earlier.
        self.launched_at = 0.0

    # -- what the services are told ---------------------------------------------------------------------

    def database_url(self, name: str) -> str:
        given = dict(self.options.databases)
        if name in given:
            return given[name]
        return f"sqlite+aiosqlite:///{(self.options.state_dir / f'{name}.sqlite3').resolve()}"

    def _settings(self, service: str, triton_url: str) -> dict[str, Any]:
        options = self.options
        auth = {"local_key": _private_key_text(self._auth_key)}
        disclosure: dict[str, Any] = {
            "window_s": options.window_s,
            "threshold": options.threshold,
            "release_delay_s": options.release_delay_s,
        }
        if options.window_s < 1200:
            disclosure["window_justification"] = WINDOW_JUSTIFICATION
        by_service: dict[str, dict[str, Any]] = {
            "audit": {
                "database_url": self.database_url("audit"),
                "signing_key": _private_key_text(self._audit_key),
                "tree_head_interval_s": 10,
                "auth": auth,
            },
            "registry": {
                "database_url": self.database_url("registry"),
                "receipt_key": self._receipt_key,
                "source_key": self._source_key,
                "objection": {
                    "default_pause_s": options.objection_pause_s,
                    "max_pause_s": max(3600, options.objection_pause_s),
                },
                "auth": auth,
            },
            "aggregation": {
                "database_url": self.database_url("statistics"),
                "cameras": [{"id": camera, "site": SITE_ID} for camera in options.camera_ids],
                "disclosure": disclosure,
                "release_check_interval_s": 1,
                "auth": auth,
            },
            "anonymiser": {
                # No camera here: its lines and window come from the registry's policy.
                # Above inference's, so that its end-of-tracks message comes first.
                "camera_idle_s": options.camera_idle_s + 2,
            },
            "inference": {"triton_url": triton_url, "camera_idle_s": options.camera_idle_s},
            "ingest": {
                # Where a file camera's position is kept: a killed ingest goes on where it stopped.
                "state_dir": str((options.state_dir / "ingest").resolve()),
                # No camera here: ingest reads the cameras the registry hands over (their sources sealed
                # with the registry's key, in a bucket only ingest may read).
                "sources": {
                    "enabled": True,
                    "source_key": self._source_key,
                    "realtime": options.realtime,
                    "sample_fps": options.sample_fps,
                },
            },
        }
        return {"log_level": "INFO", "http": {"port": int(self.urls[service].rsplit(":", 1)[1])}} | (
            by_service[service]
        )

    def _env(self, service: str, nats: EmbeddedNats, triton_url: str) -> dict[str, str]:
        prefix = f"VIGIE_{service.upper()}_"
        env = {
            f"{prefix}{key.upper()}": value if isinstance(value, str) else json.dumps(value)
            for key, value in self._settings(service, triton_url).items()
        }
        return {**nats.service_env(service), **env}

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        options = self.options
        for path, target in ((options.video, "videos"), (options.model_repository, "models")):
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: run 'make {target}'")
        self.logs.mkdir(parents=True, exist_ok=True)
        # Positions survive a restart of ingest within a run, not into the next run (the film plays anew).
        shutil.rmtree(options.state_dir / "ingest", ignore_errors=True)
        try:
            # Vigie's accounts, one NATS user per service allowed only its subjects (vigie_core.accounts), as
            # the chart configures them; FRAMES keeps frames seconds, as in production (the film is read at
            # its own pace, as a camera would deliver it).
            self.nats = EmbeddedNats(secured=True)
            self.nats.start()
            self.triton = EmbeddedTriton(options.model_repository, log_path=self.logs / "tritonserver.log")
            self.triton.start()
            self.launched_at = time.time()
            for service in _ORDER:
                self.processes.start(
                    service, f"vigie_{service}", self._env(service, self.nats, self.triton.grpc_url)
                )
                if service == "registry":
                    # Aligned: declared as drafts (nothing read), activated when the window begins.
                    self.declare_camera(active=not options.align_to_window)
            if options.align_to_window:
                self._wait_until_ready("ingest")
                self.launched_at = self._wait_for_next_window()
                self._activate_cameras()
        except BaseException:
            self.stop()
            raise
        return self

    # -- the camera, declared as a city would ------------------------------------------------------------

    def camera_declaration(self, camera_id: str = CAMERA_ID, *, active: bool = True) -> dict[str, Any]:
        """A camera of the platform as its administrator declares it (POST /v1/cameras): the demo camera,
        or the zone camera on the same film."""
        options = self.options
        declaration: dict[str, Any] = {
            "id": camera_id,
            "status": "active" if active else "draft",
            "name": "Market Street, San Francisco (sample film)",
            "description": (
                "The 1906 film 'A Trip Down Market Street', played as a camera for the embedded demonstration"
            ),
            "location": {
                "address": "Market Street, San Francisco",
                "latitude": 37.7897,
                "longitude": -122.4006,
                "site": SITE_ID,
            },
            "source": {"url": options.video.resolve().as_uri()},
            "purpose": DEMO_PURPOSE,
            **DEMO_GEOMETRY,
            "sample_fps": options.sample_fps,
            "reporting_window_s": options.window_s,
            "legal": {
                "basis": "public_task",
                "act": "embedded demonstration (no deliberation: not a camera in a public space)",
                "dpia_reference": "DEMO-DPIA-0001",
            },
            "controller": {"name": "Vigie embedded platform", "url": "https://vigie.example/demo"},
            "dpo": {"name": "Data protection officer (demonstration)", "email": "dpo@vigie.example"},
        }
        if camera_id == ZONE_CAMERA_ID:
            del declaration["lines"]
            declaration |= {"purpose": ZONE_PURPOSE, **ZONE_GEOMETRY}
            declaration["name"] += ", the street as a zone"
        if options.window_s < 1200:
            declaration["reporting_window_justification"] = WINDOW_JUSTIFICATION
        if options.sample_fps > 5:
            declaration["sample_fps_justification"] = "benchmark of the embedded platform"
        return declaration

    def _admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token('registry:admin')}", "X-Vigie-Motive": ADMIN_MOTIVE}

    def _wait_until_ready(self, service: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10) as client:
            while not _answers(client, f"{self.urls[service]}/readyz"):
                self.check_running()
                if time.monotonic() > deadline:
                    raise PlatformFailedError(
                        f"{service} was not ready within {timeout_s:.0f} s; its log ends with:\n"
                        f"{self.log_tail(service)}"
                    )
                time.sleep(0.2)

    def declare_camera(self, *, active: bool = True, timeout_s: float = 60.0) -> None:
        """Declare the cameras through the registry's admin API (active, or as drafts that nothing reads),
        and wait until their policy and source are in the buckets (the services read them before
        analysing anything)."""
        registry = self.urls["registry"]
        headers = self._admin_headers()
        self._wait_until_ready("registry", timeout_s)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10) as client:
            for camera in self.options.camera_ids:
                body = self.camera_declaration(camera, active=active)
                created = client.post(f"{registry}/v1/cameras", json=body, headers=headers)
                if created.status_code != 201:
                    raise PlatformFailedError(
                        f"the registry refused camera {camera!r} ({created.status_code}): "
                        f"{created.text[:2000]}"
                    )
            for camera in self.options.camera_ids:
                while (
                    not client.get(f"{registry}/v1/cameras/{camera}", headers=headers)
                    .json()
                    .get("policy_published")
                ):
                    if time.monotonic() > deadline:
                        raise PlatformFailedError(f"camera {camera!r}'s policy was not published in time")
                    time.sleep(0.2)

    def console_link(self, operator: str = "demo-operator") -> str:
        """A one-time address signing ``operator`` in to the registry's operator console (valid ten
        minutes), minted with the registry's own settings, as ``python -m vigie_registry console-link``
        does."""
        from vigie_registry.console.signin import console_link
        from vigie_registry.settings import RegistrySettings

        settings = RegistrySettings(**self._settings("registry", triton_url=""))
        return console_link(settings, operator=operator, base_url=self.urls["registry"])

    def request_view(self, client: httpx.Client, motive: str, sample_seconds: int) -> httpx.Response:
        """Ask the registry for a view of the demo camera's scene without its people (built inside the
        boundary from frames sampled over ``sample_seconds``); the registry's answer, whatever it is."""
        return client.post(
            f"{self.urls['registry']}/v1/cameras/{CAMERA_ID}/view-requests",
            json={"motive": motive, "sample_seconds": sample_seconds},
            headers={"Authorization": f"Bearer {self.token('registry:admin')}"},
        )

    def wait_for_view(self, client: httpx.Client, timeout_s: float) -> dict[str, Any]:
        """Where the demo camera's view stands (the registry's ``GET .../view``), once it is no longer pending
        or after ``timeout_s``."""
        url = f"{self.urls['registry']}/v1/cameras/{CAMERA_ID}/view"
        headers = {"Authorization": f"Bearer {self.token('registry:admin')}"}
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_running()
            response = client.get(url, headers=headers)
            response.raise_for_status()
            view: dict[str, Any] = response.json()
            if view["state"] != "pending" or time.monotonic() > deadline:
                return view
            time.sleep(1.0)

    def public_camera_urls(self) -> dict[str, str]:
        """Where a citizen reads about the camera and objects: the registry's public page when it serves
        one, and the public API."""
        registry = self.urls["registry"]
        urls = {"public API": f"{registry}/v1/public/cameras/{CAMERA_ID}"}
        with httpx.Client(timeout=5) as client:
            if _answers(client, f"{registry}/cameras/{CAMERA_ID}"):
                urls = {"public page": f"{registry}/cameras/{CAMERA_ID}", **urls}
        return urls

    def _activate_cameras(self) -> None:
        """Activate the declared drafts: the registry hands their sources to ingest, which opens them."""
        with httpx.Client(timeout=10) as client:
            for camera in self.options.camera_ids:
                activated = client.post(
                    f"{self.urls['registry']}/v1/cameras/{camera}/status",
                    json={"status": "active"},
                    headers=self._admin_headers(),
                )
                if activated.status_code != 200:
                    raise PlatformFailedError(
                        f"the registry did not activate camera {camera!r} ({activated.status_code}): "
                        f"{activated.text[:2000]}"
                    )

    def _wait_for_next_window(self) -> float:
        window_s = self.options.window_s
        begins = math.ceil(time.time() / window_s) * window_s
        # Ingest opens the film a few hundred milliseconds after the activation, just before the window
        # begins, so that the film's last frame is still in that window (its first may fall in the one
        # before: a window with a frame's worth of coverage).
        time.sleep(max(0.0, begins - 0.6 - time.time()))
        return time.time()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def restart_nats(self, *, kill: bool = False) -> None:
        """Restart the broker (``kill``: as a crash would) on the same ports and storage, provisioned again as
        the chart's reconciling CronJob would: the services reconnect and go on by themselves."""
        if self.nats is None:
            raise PlatformFailedError("the platform is not running")
        self.nats.restart(kill=kill)

    def restart_triton(self, *, kill: bool = False) -> None:
        """Restart the model server (``kill``: as a crash would) on the same ports; inference waits for it."""
        if self.triton is None:
            raise PlatformFailedError("the platform is not running")
        self.triton.restart(kill=kill)

    def kill(self, service: str) -> None:
        """SIGKILL a service, as a crash or an OOM kill would, and start it again at once (as Kubernetes
        restarts a container)."""
        self.processes.kill(service)

    def stop(self) -> None:
        self.processes.stop_all()
        for component in (self.triton, self.nats):
            if component is not None:
                component.stop()

    # -- for callers ------------------------------------------------------------------------------------

    def token(self, *scopes: str, subject: str = "demo-operator", ttl_s: float = 12 * 3600.0) -> str:
        """A bearer token for the platform's APIs, signed with the platform's local key."""
        return self.issuer.mint(subject, scopes, ttl_s=ttl_s)

    def check_running(self) -> None:
        for name in self.processes.crashed():
            raise PlatformFailedError(
                f"{name} stopped unexpectedly; its log ends with:\n{self.log_tail(name)}"
            )

    def read_progress(self, client: httpx.Client, progress: FilmProgress) -> None:
        """Update ``progress`` from the services' /metrics."""
        ingest, inference = scrape(client, self.urls["ingest"]), scrape(client, self.urls["inference"])
        anonymiser, aggregation = (
            scrape(client, self.urls["anonymiser"]),
            scrape(client, self.urls["aggregation"]),
        )
        now = time.time()
        opened = [
            value
            for (metric, labels), value in ingest.items()
            if metric == "vigie_ingest_camera_opened_timestamp_seconds"
        ]
        if len(opened) >= len(self.options.camera_ids):
            progress.opened_by = max(opened)
        progress.frames_decoded = int(total(ingest, "vigie_ingest_frames_decoded_total"))
        progress.frames_published = int(total(ingest, "vigie_ingest_frames_published_total"))
        progress.frames_analysed = int(total(inference, "vigie_inference_frames_total"))
        progress.frames_not_analysed = int(
            sum(total(inference, "vigie_inference_frames_dropped_total", reason=r) for r in POLICY_CAUSES)
        )
        progress.frames_counted = int(total(anonymiser, "vigie_anonymiser_frames_total"))
        progress.frames_not_counted = int(
            sum(total(anonymiser, "vigie_anonymiser_frames_dropped_total", reason=r) for r in POLICY_CAUSES)
        )
        progress.reports_stored = int(total(aggregation, "vigie_aggregation_reports_stored_total"))
        progress.windows_closed = int(total(anonymiser, "vigie_anonymiser_reports_published_total"))
        states = {
            dict(labels)["camera"]: dict(labels)["state"]
            for (metric, labels), value in ingest.items()
            if metric == "vigie_ingest_camera_state" and value == 1
        }
        if set(states) >= set(self.options.camera_ids):
            # The least advanced camera's state: the film is counted once every camera has finished it.
            unfinished = [state for state in states.values() if state != "finished"]
            progress.camera_state = "failed" if "failed" in unfinished else (unfinished or ["finished"])[0]
        if progress.frames_analysed and not progress.first_analysed_at:
            progress.first_analysed_at = now
        if progress.first_analysed_at and now > progress.first_analysed_at:
            progress.analysed_per_second = round(
                progress.frames_analysed / (now - progress.first_analysed_at), 1
            )

    def windows_closed(self, client: httpx.Client) -> int:
        """Reporting windows the anonymiser closed and reported, from its /metrics."""
        return int(total(scrape(client, self.urls["anonymiser"]), "vigie_anonymiser_reports_published_total"))

    def wait_until_counted(
        self,
        client: httpx.Client,
        timeout_s: float,
        on_progress: Callable[[FilmProgress], None] = lambda _: None,
    ) -> FilmProgress:
        """Until the film is decoded, analysed and counted; raises :class:`PlatformFailedError` otherwise."""
        progress, deadline = FilmProgress(), time.monotonic() + timeout_s
        while not progress.counted:
            time.sleep(1.0)
            self.check_running()
            self.read_progress(client, progress)
            on_progress(progress)
            if progress.camera_state == "failed":
                raise PlatformFailedError(
                    f"the camera failed; ingest's log ends with:\n{self.log_tail('ingest')}"
                )
            if time.monotonic() > deadline:
                raise PlatformFailedError(f"the film was not counted within {timeout_s:.0f} s")
        return progress

    def wait_until_published(self, client: httpx.Client, progress: FilmProgress) -> None:
        """Until the window holding the film's last frame is published (docs/privacy.md rule 11: nothing is
        published before its reporting window has ended)."""
        last = self.last_window_start(progress.opened_by)
        deadline = time.monotonic() + self.options.window_s * 3 + 120
        while time.monotonic() < deadline:
            self.check_running()
            published = scrape(client, self.urls["aggregation"])
            if total(published, "vigie_published_window_start_seconds", site=SITE_ID) >= last:
                return
            time.sleep(1.0)
        raise PlatformFailedError(
            f"the film's last window was not published in time; aggregation's log ends with:\n"
            f"{self.log_tail('aggregation')}"
        )

    def film_period(self, progress: FilmProgress) -> tuple[int, int]:
        """The reporting windows the film's frames fall in: [start, end), Unix seconds."""
        window_s = self.options.window_s
        start = math.floor(self.launched_at / window_s) * window_s
        return start, self.last_window_start(progress.opened_by) + window_s

    def last_window_start(self, opened_by: float) -> int:
        """The start of the reporting window holding the film's last frame (Unix seconds), for a film that
        ingest opened by ``opened_by``: its frames' capture times are the opening time plus their own."""
        last_capture = opened_by + film_duration_s(self.options.video)
        window = self.options.window_s
        return math.floor(last_capture / window) * window

    def log_tail(self, service: str, chars: int = 3000) -> str:
        path = self.logs / f"{service}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
