"""The embedded demo: the whole platform on one machine analyses one video as a camera, then shows the
anonymous statistics it published, read from the statistics API as a municipal application would, and the
size of the audit journal that recorded it all. While the film plays, it asks the registry for a view of the
camera's scene without its people (made inside the boundary, as an operator would to draw counting lines on
it) and says whether it was made.

Progress is read from the services' own /metrics; the demo never reads FRAMES or TRACKS, it stays outside
the inference boundary like any client.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vigie_embedded.platform import (
    CAMERA_ID,
    SITE_ID,
    EmbeddedPlatform,
    FilmProgress,
    PlatformFailedError,
    PlatformOptions,
)

__all__ = [
    "TRY_IT_MOTIVE",
    "DemoOptions",
    "DemoResult",
    "run_demo",
    "suppression_explained",
    "try_it_commands",
]
MOTIVE = "embedded demo: figures of the sample film"
TRY_IT_MOTIVE = "trying the API"
VIEW_MOTIVE = "embedded demo: a view of the scene to draw counting lines on"
# How long the view's frames are sampled: most of the sample film, which lasts a minute.
VIEW_SAMPLE_S = 40


@dataclass(frozen=True)
class DemoOptions:
    video: Path
    model_repository: Path
    sample_fps: float = 5.0
    timeout_s: float = 600.0
    serve: bool = False
    as_json: bool = False


@dataclass
class DemoResult:
    progress: FilmProgress = field(default_factory=FilmProgress)
    windows: list[dict[str, Any]] = field(default_factory=list)
    crossings: list[dict[str, Any]] = field(default_factory=list)
    occupancy: list[dict[str, Any]] = field(default_factory=list)
    audit_entries: int = 0
    endpoints: dict[str, str] = field(default_factory=dict)
    # The camera's view as the registry describes it (state, size, frames; a refusal's reason), and its
    # JPEG's size in bytes: never the picture itself.
    view: dict[str, Any] = field(default_factory=dict)
    # What the demo prints for a person to query the platform themselves (shell lines, in order).
    commands: list[str] = field(default_factory=list)
    # With --serve: a one-time sign-in address of the operator console (valid ten minutes).
    console_link: str = ""


def _clock(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suppression_explained(threshold: int) -> str:
    """What "suppressed" means, in plain words (services/aggregation's disclosure control)."""
    return (
        'What "suppressed" means: that figure is withheld, not zero. A count from 1 to '
        f"{threshold - 1} is too small to publish: it could single out the few people behind it. "
        "Any other figure from which a withheld count could be worked out (a total minus its "
        "published parts, a day minus its other windows) is withheld too. A zero is published: it "
        "says nobody was counted, which is about no one. The demo's windows last one minute and hold "
        "few people, so more is withheld than with the 20 minutes of a real camera."
    )


def try_it_commands(
    urls: Mapping[str, str], token: str, period: tuple[int, int], *, view: bool = False
) -> list[str]:
    """Shell lines that query the running platform as the demo did: the token in a variable, the
    camera's published crossings over the film's reporting windows (``period``, Unix seconds: today's,
    the figures the summary showed), the audit journal's entries for reads of statistics (the demo's,
    and the one just made, with its motive), and, with ``view``, the camera's view saved as view.jpg."""
    start, end = period
    motive = TRY_IT_MOTIVE.replace(" ", "+")
    statistics = (
        f"{urls['aggregation']}/api/statistics/v1/crossings?camera={CAMERA_ID}&level=camera"
        f"&from={_iso(start)}&to={_iso(end)}&motive={motive}"
    )
    audit = f"{urls['audit']}/api/audit/v1/entries?action=data_read&motive={motive}"
    authorization = '-H "Authorization: Bearer $TOKEN"'
    commands = [f"TOKEN='{token}'", f"curl {authorization} '{statistics}'", f"curl {authorization} '{audit}'"]
    if view:
        picture = f"{urls['registry']}/v1/cameras/{CAMERA_ID}/view.jpg?motive={motive}"
        commands.append(f"curl {authorization} '{picture}' -o view.jpg")
    return commands


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.result = DemoResult()
        self.started = time.monotonic()
        self._reported = False

    def say(self, line: str = "") -> None:
        if not self.options.as_json:
            print(line, flush=True)

    def run(self) -> int:
        options = self.options
        # The demo stops on Ctrl-C, however it was started: a shell's background job (or a program started
        # from one) inherits SIGINT ignored, and Python then leaves it ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for path, target in ((options.video, "videos"), (options.model_repository, "models")):
            if not path.exists():
                print(f"{path} not found: run 'make {target}'", file=sys.stderr)
                return 2
        self.say(
            "starting nats-server, tritonserver and the services; the camera is declared in the registry "
            "and starts with the next reporting window ..."
        )
        with tempfile.TemporaryDirectory(prefix="vigie-demo-") as state:
            platform_options = PlatformOptions(
                video=options.video,
                model_repository=options.model_repository,
                state_dir=Path(state),
                sample_fps=options.sample_fps,
                align_to_window=True,
            )
            platform = EmbeddedPlatform(platform_options)
            try:
                with platform, httpx.Client(timeout=10) as client:
                    self._endpoints(platform)
                    self._counted_and_published(platform, client)
                    self._read_statistics(platform, client)
                    self._read_view(platform, client)
                    self.result.commands = try_it_commands(
                        platform.urls,
                        platform.token("stats:read", "audit:read", "registry:admin"),
                        platform.film_period(self.result.progress),
                        view=self.result.view.get("state") == "ready",
                    )
                    if options.serve:
                        self.result.console_link = platform.console_link()
                    if options.as_json:
                        self._report()  # before serving: a caller reads it while the platform is up
                    else:
                        self._summary(platform)
                    if options.serve:
                        self._serve(platform)
                code = 0
            except PlatformFailedError as error:
                print(error, file=sys.stderr)
                code = 1
            except KeyboardInterrupt:
                self.say("\nstopping ...")
                code = 130
        if options.as_json and not self._reported:
            self._report()
        return code

    def _report(self) -> None:
        print(json.dumps(asdict(self.result)), flush=True)
        self._reported = True

    def _endpoints(self, platform: EmbeddedPlatform) -> None:
        assert platform.nats is not None
        assert platform.triton is not None
        urls = platform.urls
        self.result.endpoints = {
            "statistics API (aggregation), docs": f"{urls['aggregation']}/api/statistics/v1/docs",
            "audit API, docs": f"{urls['audit']}/api/audit/v1/docs",
            "registry API (cameras, register), docs": f"{urls['registry']}/v1/docs",
            **{f"camera '{CAMERA_ID}', {name}": url for name, url in platform.public_camera_urls().items()},
            **{f"{name}: /metrics /healthz /readyz": url for name, url in urls.items()},
            "nats-server (client)": platform.nats.url,
            "nats-server (monitoring)": platform.nats.monitoring_url,
            "tritonserver (gRPC)": platform.triton.grpc_url,
        }
        for name, url in self.result.endpoints.items():
            self.say(f"  {name:38s} {url}")

    def _show(self, progress: FilmProgress) -> None:
        # Frames and windows only: how many people are in view now is what the platform never shows.
        self.say(
            f"[{time.monotonic() - self.started:4.0f} s] {progress.camera_state}: "
            f"{progress.frames_decoded} decoded, {progress.frames_published} sent, "
            f"{progress.frames_analysed} analysed ({progress.analysed_per_second}/s), "
            f"{progress.frames_counted} counted; {progress.windows_closed} window(s) closed"
        )

    def _counted_and_published(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        self.started = time.monotonic()

        def on_progress(progress: FilmProgress) -> None:
            self._show(progress)
            if progress.frames_analysed and not self.result.view:
                self._ask_for_view(platform, client)

        self.result.progress = progress = platform.wait_until_counted(
            client, self.options.timeout_s, on_progress
        )
        _, end = platform.film_period(progress)
        self.say(
            f"waiting for the reporting window ending at {datetime.fromtimestamp(end, UTC):%H:%M:%S} UTC "
            "to close and be published ..."
        )
        platform.wait_until_published(client, progress)
        progress.windows_closed = platform.windows_closed(client)  # by then

    def _ask_for_view(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        """Once the camera is analysed: ask for its view, as an operator would (a refusal is shown, the
        demo goes on)."""
        asked = platform.request_view(client, VIEW_MOTIVE, VIEW_SAMPLE_S)
        if asked.status_code == 202:
            self.result.view = {"state": "pending"}
            self.say(
                f"asked the registry for a view of the scene without its people ({VIEW_SAMPLE_S} s of frames)"
            )
        else:
            self.result.view = {"state": "not asked", "reason": asked.json().get("detail", asked.text)}

    def _read_view(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        if self.result.view.get("state") != "pending":
            return
        view = platform.wait_for_view(client, timeout_s=120.0)
        shown = ("state", "reason", "width", "height", "frames", "sampled_seconds")
        self.result.view = {key: view[key] for key in shown if view.get(key) is not None}
        if view["state"] == "ready":
            picture = client.get(
                f"{platform.urls['registry']}/v1/cameras/{CAMERA_ID}/view.jpg",
                params={"motive": VIEW_MOTIVE},
                headers={"Authorization": f"Bearer {platform.token('registry:admin')}"},
            )
            picture.raise_for_status()
            self.result.view["bytes"] = len(picture.content)

    def _read_statistics(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        """Read the figures through the statistics API, as a municipal application would."""
        start, end = platform.film_period(self.result.progress)
        api = f"{platform.urls['aggregation']}/api/statistics/v1"
        headers = {"Authorization": f"Bearer {platform.token('stats:read')}", "X-Vigie-Motive": MOTIVE}
        period: dict[str, str | int] = {
            "site": SITE_ID,
            "from": datetime.fromtimestamp(start, UTC).isoformat(),
            "to": datetime.fromtimestamp(end, UTC).isoformat(),
            "limit": 1000,
        }
        cameras = client.get(f"{api}/crossings", params={**period, "level": "camera"}, headers=headers)
        lines = client.get(
            f"{api}/crossings",
            params={**period, "level": "line", "direction": "each", "object_class": "each"},
            headers=headers,
        )
        occupancy = client.get(f"{api}/occupancy", params=period, headers=headers)
        for response in (cameras, lines, occupancy):
            response.raise_for_status()
        result = self.result
        result.windows = [
            {
                "period_start": item["period_start"],
                "period_end": item["period_end"],
                "crossings": item["count"],
                "suppressed": item["suppressed"],
                "coverage": item["coverage"]["ratio"],
            }
            for item in cameras.json()["items"]
            if item["camera"] == CAMERA_ID
        ]
        result.crossings = [
            {
                key: item[key]
                for key in ("period_start", "line", "direction", "object_class", "count", "suppressed")
            }
            for item in lines.json()["items"]
        ]
        result.occupancy = [
            {key: item[key] for key in ("period_start", "zone", "object_class", "mean_objects", "suppressed")}
            for item in occupancy.json()["items"]
        ]
        # A tree head signed now: the journal's size, and what an auditor would keep to check it later.
        audit = client.post(
            f"{platform.urls['audit']}/api/audit/v1/tree-heads",
            params={"motive": MOTIVE},
            headers={"Authorization": f"Bearer {platform.token('audit:read')}"},
        )
        audit.raise_for_status()
        result.audit_entries = int(audit.json()["tree_size"])

    def _summary(self, platform: EmbeddedPlatform) -> None:
        result, progress = self.result, self.result.progress
        print(f"\nVigie analysed {self.options.video.name}:")
        print(f"  frames decoded:   {progress.frames_decoded}")
        print(
            f"  frames analysed:  {progress.frames_analysed} "
            f"({progress.analysed_per_second} frames/s end to end)"
        )
        print(f"  windows closed:   {progress.windows_closed}")
        if not result.windows:
            return
        threshold = platform.options.threshold
        print(
            f"\nPublished statistics of site {SITE_ID!r}, read from the statistics API "
            f"({platform.options.window_s} s windows for this demo):"
        )
        for window in result.windows:
            begins = window["period_start"]
            figure = "suppressed" if window["suppressed"] else window["crossings"]
            print(
                f"  {_clock(begins)}-{_clock(window['period_end'])} UTC, camera analysed "
                f"{window['coverage']:.0%} of the window"
            )
            print(f"      crossings, all lines and classes: {figure}")
            cells = [item for item in result.crossings if item["period_start"] == begins]
            shown = [item for item in cells if not item["suppressed"] and item["count"]]
            for item in shown:
                print(
                    f"      line {item['line']}, {item['direction']}, {item['object_class']}: {item['count']}"
                )
            suppressed = sum(item["suppressed"] for item in cells)
            if suppressed:
                print(
                    f"      {suppressed} of {len(cells)} figures by line, direction and class suppressed "
                    f"(from 1 to {threshold - 1}, or revealing one that is)"
                )
            for item in result.occupancy:
                if item["period_start"] == begins and item["object_class"] == "all":
                    mean = "suppressed" if item["suppressed"] else f"{item['mean_objects']:.1f} on average"
                    print(f"      zone {item['zone']}, occupancy: {mean}")
        figures = [*result.windows, *result.crossings, *result.occupancy]
        if any(figure["suppressed"] for figure in figures):
            print()
            print(textwrap.fill(suppression_explained(threshold), width=100))
        print(
            f"\nAudit journal: a tree head signed now covers {result.audit_entries} entries "
            "(configurations, model versions, exports and reads of statistics)."
        )
        view = result.view
        if view.get("state") == "ready":
            print(
                f"\nA view of the scene without its people, made inside the boundary from {view['frames']} "
                f"frames over {view['sampled_seconds']:.0f} s:\n  {view['width']}x{view['height']}, "
                f"{view['bytes'] / 1000:.0f} KB (make demo ARGS=--serve prints how to fetch it)."
            )
        elif view:
            print(f"\nNo view of the scene was made ({view['state']}): {view.get('reason', 'no answer')}")
        if not self.options.serve:
            print("Keep the platform up to query it yourself: make demo ARGS=--serve")

    def _serve(self, platform: EmbeddedPlatform) -> None:
        self.say(
            "\nThe platform stays up until Ctrl-C. The operator console (the cameras, their view, lines and "
            "zones\nto draw), signed in by this one-time link, valid ten minutes:\n"
            f"  {self.result.console_link}"
        )
        self.say("Query it yourself (the token is valid 12 hours):")
        for line in self.result.commands:
            self.say(f"  {line}")
        view = (
            ", the third saves the view of the scene\nwithout its people as view.jpg"
            if len(self.result.commands) > 3
            else ""
        )
        self.say(
            "The first gives the figures above (add &format=csv inside the quotes for CSV), the second\n"
            f"the reads of statistics in the audit journal, yours among them{view}. Each API documents\n"
            "itself at the 'docs' addresses above."
        )
        while True:
            time.sleep(1.0)
            platform.check_running()


def run_demo(options: DemoOptions) -> int:
    return Demo(options).run()
