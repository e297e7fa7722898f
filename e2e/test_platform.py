"""The whole embedded platform on the sample film, run once for this module, with a local Prometheus
scraping it from the start when the ``prometheus`` binary is installed:

- a video in, counts out through the statistics API (ingest → inference with a real tritonserver →
  anonymiser → aggregation → API), in JSON and CSV, with disclosure control and clear 4xx; the camera
  declared in the registry, whose policy (lines, zone, window) the services follow;
- the right to object, measured end to end: a citizen objects through the registry's public endpoint
  while the film is being analysed (the film is played at its own pace, as a live camera); the receipt
  shows the camera paused, the last frame analysed after the request is less than a second later, and the
  paused rest of the film shows as missing coverage in the published figures;
- a second camera on the same film, declared under occupancy_statistics with a zone, read by ingest from
  the registry like the first: its zone figures are published, and the objection on the first camera
  does not pause it;
- every service's audit events in the journal;
- every query of every committed Grafana dashboard returns data from that Prometheus;
- last, the camera's public page in Chromium (driven by Playwright): its object button pauses the second
  camera. Only that test needs the browser (Debian's chromium: ``make system-packages``); every other test
  of this module runs without it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from vigie_embedded.browser import CHROMIUM_ARGS, chromium
from vigie_embedded.platform import (
    CAMERA_ID,
    DEMO_GEOMETRY,
    SITE_ID,
    ZONE_CAMERA_ID,
    ZONE_GEOMETRY,
    EmbeddedPlatform,
    FilmProgress,
    PlatformOptions,
    Samples,
    film_duration_s,
    scrape,
    total,
)
from vigie_embedded.prometheus import EmbeddedPrometheus, prometheus_binary
from vigie_embedded.testing import metric_privacy_problems
from vigie_registry.public.i18n import catalogue

pytestmark = pytest.mark.integration

MOTIVE = "end-to-end test of the statistics API"
# When, in the film, a citizen objects (seconds after ingest opened it), and for how long an objection
# pauses the camera (the shortest pause the registry takes: it outlasts the film).
OBJECTION_AT_S = 42.0
PAUSE_S = 60
LAST_ANALYSED = "vigie_inference_last_frame_analysed_timestamp_seconds"
EN = catalogue("en")


class Citizen:
    """A citizen's browser on the camera's public page (reached from the QR code on the sign)."""

    def __init__(self, page: Page, camera_page: str) -> None:
        self.page = page
        self.camera_page = camera_page

    def open_the_camera_page(self) -> None:
        self.page.goto(f"{self.camera_page}?lang=en")
        expect(self.page.locator("main")).to_contain_text(EN("camera.now_analysing"))

    def object(self) -> dict[str, Any]:
        """Press the object button; the receipt's fields, once the receipt page shows the pause."""
        self.page.get_by_role("button", name=EN("camera.object_button")).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(EN("receipt.heading"))
        expect(self.page.locator("main .live")).to_contain_text(EN("state.paused_by_objection"))
        return {
            name: self.page.locator(f"input[type=hidden][name={name}]").get_attribute("value")
            for name in ("receipt_id", "camera_id", "recorded_at", "paused_until", "signature")
        }


@dataclass
class Objection:
    """The objection made during the film, as seen from outside the boundary (the public endpoint and the
    services' /metrics; never FRAMES or TRACKS)."""

    requested_at: float = 0.0
    receipt: dict[str, Any] = field(default_factory=dict)
    # Inference's latest analysed frame of the camera (wall clock, Unix seconds) just before the request
    # and once the film ended.
    analysed_before: float = 0.0
    analysed_after: float = 0.0
    # When ingest and inference applied the last change of the policy (the pause): Unix seconds.
    policy_reached: dict[str, float] = field(default_factory=dict)
    # What the services said once the film ended.
    frames_dropped_paused: float = 0.0
    ingest_analysing: float = -1.0
    public_state: str = ""
    # The other camera (on the same film, not objected to) kept being analysed.
    other_camera_analysing: float = -1.0

    def make(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        self.analysed_before = total(
            scrape(client, platform.urls["inference"]), LAST_ANALYSED, camera=CAMERA_ID
        )
        self.requested_at = time.time()
        response = client.post(f"{platform.urls['registry']}/v1/public/cameras/{CAMERA_ID}/objections")
        self.receipt = response.json().get("receipt", {}) if response.status_code == 201 else {}
        if not self.receipt:
            raise AssertionError(f"the objection was refused: {response.status_code} {response.text}")

    def observe(self, platform: EmbeddedPlatform, client: httpx.Client) -> None:
        inference = scrape(client, platform.urls["inference"])
        self.analysed_after = total(inference, LAST_ANALYSED, camera=CAMERA_ID)
        for service in ("ingest", "inference", "anonymiser"):
            samples = inference if service == "inference" else scrape(client, platform.urls[service])
            self.policy_reached[service] = total(samples, "vigie_policy_last_update_timestamp_seconds")
        self.frames_dropped_paused = total(
            inference, "vigie_inference_frames_dropped_total", reason="objection_pause"
        )
        ingest = scrape(client, platform.urls["ingest"])
        self.ingest_analysing = total(ingest, "vigie_ingest_camera_analysed", camera=CAMERA_ID)
        self.other_camera_analysing = total(ingest, "vigie_ingest_camera_analysed", camera=ZONE_CAMERA_ID)
        public = client.get(f"{platform.urls['registry']}/v1/public/cameras/{CAMERA_ID}")
        self.public_state = public.json().get("state", "")


@dataclass(frozen=True)
class PublishedFilm:
    """The platform after it counted the sample film and published every window of it."""

    platform: EmbeddedPlatform
    progress: FilmProgress
    client: httpx.Client
    prometheus: EmbeddedPrometheus | None
    # Wall clock: before the services started, and once the film's last window was published.
    began: float
    published: float
    # The aggregation's /metrics just then.
    metrics_at_publication: Samples
    objection: Objection

    @property
    def period(self) -> tuple[int, int]:
        return self.platform.film_period(self.progress)


@pytest.fixture(scope="module")
def published_film(
    tmp_path_factory: pytest.TempPathFactory, sample_video: Path, model_repository: Path
) -> Iterator[PublishedFilm]:
    options = PlatformOptions(
        video=sample_video,
        model_repository=model_repository,
        state_dir=tmp_path_factory.mktemp("platform"),
        sample_fps=2,
        # At the film's own pace, as a live camera: capture times are wall-clock times, so that "after the
        # objection" means the same thing to the citizen, the registry and the services.
        realtime=True,
        # The film in one reporting window (the services start while ingest waits for the window):
        # split between two, a window holding a few seconds of it has counts too small to publish, and
        # secondary suppression over the day then hides the other window's too, as it must.
        align_to_window=True,
        # The general rule's threshold (docs/privacy.md rule 12), not the default 11 for persons: the
        # objection cuts the film short, and this test is about the pipeline, not about disclosure control
        # (tested on its own in services/aggregation).
        threshold=3,
        objection_pause_s=PAUSE_S,
        zone_camera=True,
    )
    began = time.time()
    with contextlib.ExitStack() as stack:
        platform = stack.enter_context(EmbeddedPlatform(options))
        client = stack.enter_context(httpx.Client(timeout=10))
        prometheus = None
        if prometheus_binary() is not None:
            prometheus = stack.enter_context(EmbeddedPrometheus(platform.urls))
        objection = Objection()

        def object_during_the_film(progress: FilmProgress) -> None:
            started = progress.opened_by
            if not started or objection.requested_at:
                return
            if time.time() - started >= OBJECTION_AT_S:
                objection.make(platform, client)

        progress = platform.wait_until_counted(client, timeout_s=300, on_progress=object_during_the_film)
        objection.observe(platform, client)
        platform.wait_until_published(client, progress)
        at_publication = scrape(client, platform.urls["aggregation"])
        yield PublishedFilm(
            platform, progress, client, prometheus, began, time.time(), at_publication, objection
        )


def _get(film: PublishedFilm, path: str, scopes: tuple[str, ...] = ("stats:read",), **params: Any) -> Any:
    start, end = film.period
    query = {
        "site": SITE_ID,
        "from": datetime.fromtimestamp(start, UTC).isoformat(),
        "to": datetime.fromtimestamp(end, UTC).isoformat(),
        "motive": MOTIVE,
    } | params
    query = {name: value for name, value in query.items() if value is not None}  # site=None: cameras
    headers = {"Authorization": f"Bearer {film.platform.token(*scopes)}"}
    return film.client.get(
        f"{film.platform.urls['aggregation']}/api/statistics/v1/{path}", params=query, headers=headers
    )


def test_the_film_is_counted_and_published_through_the_api(published_film: PublishedFilm) -> None:
    film = published_film
    start, end = film.period
    window_s = film.platform.options.window_s
    response = _get(film, "crossings", level="camera")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["disclosure"]["threshold"] == film.platform.options.threshold
    assert page["disclosure"]["window_seconds"] == window_s
    items = [item for item in page["items"] if item["camera"] == CAMERA_ID]
    # The film's windows are published, once each, in order (the last one estimated for the film may
    # hold none of its frames: ingest's opening time is known within a second).
    periods = [int(datetime.fromisoformat(item["period_start"]).timestamp()) for item in items]
    assert periods
    assert periods == list(range(periods[0], periods[0] + window_s * len(periods), window_s))
    assert start <= periods[0]
    assert periods[-1] < end
    # The film analysed at 2 frames/s until the objection, spread over those windows.
    covered = sum(item["coverage"]["covered_seconds"] for item in items)
    analysed_s = film.objection.requested_at - film.progress.opened_by
    assert analysed_s - 12 <= covered <= analysed_s + 2, items
    counts = [item["count"] for item in items if not item["suppressed"]]
    assert sum(counts) >= 3, items  # people crossed the three lines
    threshold = film.platform.options.threshold
    every = _get(film, "crossings", level="line", direction="each", object_class="each").json()["items"]
    # Figures for each line the registry declared. The camera's purpose (pedestrian_flow_statistics) counts
    # people only: no vehicle figure is published at all (it was never measured).
    assert {item["line"] for item in every} == {line["id"] for line in DEMO_GEOMETRY["lines"]}
    assert {item["object_class"] for item in every} == {"person"}, every
    for item in every:
        # Disclosure control: a published count is 0 or at least the threshold; a suppressed one is null.
        assert (item["count"] is None) == item["suppressed"], item
        assert item["suppressed"] or item["count"] == 0 or item["count"] >= threshold, item


def test_the_zone_camera_publishes_occupancy_and_stays(published_film: PublishedFilm) -> None:
    """The second camera, on the same film under occupancy_statistics: its zone's occupancy and stays are
    published for the film's windows, with every class its purpose counts, and no line crossing."""
    film = published_film
    (zone,) = (zone["id"] for zone in ZONE_GEOMETRY["zones"])
    occupancy = _get(film, "occupancy", site=None, camera=ZONE_CAMERA_ID, object_class="each")
    assert occupancy.status_code == 200, occupancy.text
    items = occupancy.json()["items"]
    assert {item["zone"] for item in items} == {zone}, items
    people = [item for item in items if item["object_class"] == "person" and not item["suppressed"]]
    assert people, items
    # People walk in the street while the film is analysed: the zone held some.
    assert any(item["max_objects"] >= 1 and item["mean_objects"] > 0 for item in people), [
        (i["period_start"][11:16], i["object_class"], i["max_objects"], i["mean_objects"], i["reason"])
        for i in items
    ]
    # The camera was not objected to: its whole film is covered.
    covered = {item["period_start"]: item["coverage"]["covered_seconds"] for item in items}
    assert sum(covered.values()) >= film_duration_s(film.platform.options.video) - 12, covered
    stays = _get(film, "dwell", site=None, camera=ZONE_CAMERA_ID, dwell="each").json()["items"]
    buckets = {item["dwell"] for item in stays}
    assert len(buckets) >= len(ZONE_GEOMETRY["dwell_buckets_s"]), stays  # listed buckets, even empty ones
    # People stayed in the street: the stays of the film's windows, over every duration, are published
    # (each duration alone is mostly too small a count to publish).
    totals = _get(film, "dwell", site=None, camera=ZONE_CAMERA_ID).json()["items"]
    assert any(item["count"] for item in totals if not item["suppressed"]), [
        (item["period_start"][11:16], item["dwell"], item["count"], item["reason"]) for item in totals + stays
    ]
    crossings = _get(film, "crossings", site=None, camera=ZONE_CAMERA_ID, level="camera").json()["items"]
    assert crossings == []


def test_csv_gives_the_same_figures(published_film: PublishedFilm) -> None:
    as_json = _get(published_film, "crossings", level="camera").json()["items"]
    response = _get(published_film, "crossings", level="camera", format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["count"] for row in rows] == ["" if i["count"] is None else str(i["count"]) for i in as_json]


def test_the_metrics_show_the_latest_published_window(published_film: PublishedFilm) -> None:
    """/metrics showed the film's last window when it was published, with exactly what the API serves."""
    film = published_film
    published = film.metrics_at_publication
    start = int(total(published, "vigie_published_window_start_seconds", site=SITE_ID))
    assert film.period[0] <= start < film.period[1]
    window = {
        "from": datetime.fromtimestamp(start, UTC).isoformat(),
        "to": datetime.fromtimestamp(start + film.platform.options.window_s, UTC).isoformat(),
    }
    items = _get(film, "crossings", level="camera", **window).json()["items"]
    camera_total = [
        value
        for (name, labels), value in published.items()
        if name == "vigie_published_camera_crossings"
        and dict(labels) == {"site": SITE_ID, "camera": CAMERA_ID, "object_class": "all"}
    ]
    assert camera_total == [item["count"] for item in items if not item["suppressed"]]


def test_no_service_s_metrics_count_what_the_cameras_see(published_film: PublishedFilm) -> None:
    """Every service's /metrics, after the film, the objection and the publication: no metric counts the
    people or vehicles a camera sees (only the published figures, disclosure-controlled), and no label
    names a client or a camera source (vigie_embedded.testing.metric_privacy_problems)."""
    film = published_film
    for service, url in film.platform.urls.items():
        page = film.client.get(f"{url}/metrics").text
        assert "vigie_" in page, service
        assert metric_privacy_problems(page) == [], service


def test_malformed_requests_name_the_field(published_film: PublishedFilm) -> None:
    response = _get(published_film, "crossings", level="everything")
    assert response.status_code == 422
    assert "level" in response.text
    unauthenticated = published_film.client.get(
        f"{published_film.platform.urls['aggregation']}/api/statistics/v1/crossings"
    )
    assert unauthenticated.status_code == 401
    assert _get(published_film, "crossings", scopes=("audit:read",)).status_code == 403


def test_every_service_wrote_to_the_audit_journal(published_film: PublishedFilm) -> None:
    film = published_film
    assert _get(film, "occupancy").status_code == 200  # a read of statistics, audited
    audit = f"{film.platform.urls['audit']}/api/audit/v1/entries"
    headers = {"Authorization": f"Bearer {film.platform.token('audit:read', subject='e2e-dpo')}"}
    wanted = {
        ("registry", "config_create"),  # the demo camera, declared
        ("registry", "objection_honoured"),
        ("ingest", "config_update"),
        ("inference", "config_update"),
        ("inference", "model_version_change"),
        ("anonymiser", "config_update"),
        ("aggregation", "data_export"),  # the published window, put on /metrics
        ("aggregation", "data_read"),
    }
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 60
    while not wanted <= seen and time.monotonic() < deadline:
        entries = film.client.get(audit, params={"limit": 1000, "motive": MOTIVE}, headers=headers).json()
        seen = {(entry["service"], entry["action"]) for entry in entries["entries"]}
        time.sleep(1)
    assert wanted <= seen, f"missing: {wanted - seen}"
    # The read above is journaled with who read, why, and which camera.
    entries = film.client.get(
        audit, params={"action": "data_read", "motive": MOTIVE, "limit": 1000}, headers=headers
    ).json()["entries"]
    reads = [entry for entry in entries if entry["motive"] == MOTIVE]
    assert reads
    assert all(entry["camera_ids"] for entry in reads)
    assert any(CAMERA_ID in entry["camera_ids"] for entry in reads)


def test_an_objection_stops_the_analysis_within_a_second(published_film: PublishedFilm) -> None:
    """docs/privacy.md rule 16: an objection pauses the camera, honoured within a second,
    measured from the request to the last frame inference analysed (its /metrics), while the film was
    being analysed."""
    objection = published_film.objection
    assert objection.requested_at, "the film ended before the objection"
    # The receipt: recorded when pressed, the camera paused from then on.
    assert objection.receipt["camera_id"] == CAMERA_ID
    recorded, until = int(objection.receipt["recorded_at"]), int(objection.receipt["paused_until"])
    assert abs(recorded - objection.requested_at) < 2
    assert until - recorded == PAUSE_S
    # It was being analysed: a frame (one every 0.5 s) shortly before the request.
    assert objection.requested_at - objection.analysed_before < 2.0
    # And not after: the last frame analysed came less than a second after the request.
    delay = objection.analysed_after - objection.requested_at
    assert delay < 1.0, f"a frame was analysed {delay:.2f} s after the objection"
    # The pause reached every service that analyses, well within that second.
    reached = {name: at - objection.requested_at for name, at in objection.policy_reached.items()}
    assert all(0 < seconds < 1.0 for seconds in reached.values()), reached
    print(
        f"objection: last frame analysed {delay:+.3f} s after the request; the pause reached "
        + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in reached.items())
        + " after it"
    )
    # Ingest stopped decoding the camera and the public page says why; the other camera went on.
    assert objection.ingest_analysing == 0
    assert objection.public_state == "paused_by_objection"
    assert objection.other_camera_analysing == 1


def test_the_paused_time_is_missing_from_the_coverage(published_film: PublishedFilm) -> None:
    """The rest of the film after the objection is not covered: the published coverage of the film's
    windows stops at the objection, and the window holding it says it was partly analysed."""
    film = published_film
    objection = film.objection
    items = [
        item
        for item in _get(film, "crossings", level="camera").json()["items"]
        if item["camera"] == CAMERA_ID
    ]
    analysed_s = objection.requested_at - film.progress.opened_by  # the film until the objection
    covered = sum(item["coverage"]["covered_seconds"] for item in items)
    # ingest opened the film within the second before opened_by was noted; frames come every 0.5 s.
    assert covered <= analysed_s + 1.5, (
        covered,
        analysed_s,
        [(i["period_start"][11:16], i["coverage"]) for i in items],
        film.progress.opened_by,
        objection.requested_at,
    )
    paused_window = (
        int(objection.requested_at // film.platform.options.window_s) * film.platform.options.window_s
    )
    (during,) = [
        i for i in items if int(datetime.fromisoformat(i["period_start"]).timestamp()) == paused_window
    ]
    window_end = paused_window + film.platform.options.window_s
    film_end = film.progress.opened_by + film_duration_s(film.platform.options.video)
    paused_in_window = min(window_end, film_end) - objection.requested_at
    assert during["coverage"]["covered_seconds"] <= film.platform.options.window_s - paused_in_window, during


DASHBOARDS = Path(__file__).resolve().parents[1] / "charts" / "vigie" / "dashboards"
# What Grafana would put in place of its variables for this run (1 s scrapes, one camera, one site).
VARIABLES = {
    "$__rate_interval": "10s",
    "$__interval": "10s",
    "$site": SITE_ID,
    "$camera": f"{CAMERA_ID}|{ZONE_CAMERA_ID}",
    "$object_class": ".*",
}
_LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>[a-z_]+)\)$")


def _dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel or variable, expression) of every committed dashboard."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        document = json.loads(path.read_text())
        for panel in document["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.stem, panel["title"], target["expr"]))
        for variable in document["templating"]["list"]:
            if variable["type"] == "query":
                queries.append((path.stem, f"${variable['name']}", variable["query"]))
    return queries


def _substitute(expression: str, range_s: int) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expression = expression.replace(name, value)
    return expression.replace("$__range", f"{range_s}s")


def _has_data(prometheus: EmbeddedPrometheus, expression: str, start: float, end: float) -> bool:
    """Whether the query gives at least one number (not NaN) at some step of the run."""
    found = _LABEL_VALUES.match(expression)
    if found:  # a Grafana variable's query: the label's values among the matching series
        values = prometheus.api(f"label/{found['label']}/values", **{"match[]": found["match"]})
        return bool(values)
    data: dict[str, Any] = prometheus.api(
        "query_range", query=expression, start=str(start), end=str(end), step="2s"
    )
    return any(value != "NaN" for series in data["result"] for _, value in series["values"])


def test_every_dashboard_query_returns_data(published_film: PublishedFilm) -> None:
    prometheus = published_film.prometheus
    if prometheus is None:
        message = "the prometheus binary is not installed: make system-packages (Debian's prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    time.sleep(3)  # a few scrapes after the last window's publication
    start, end = published_film.began, time.time()
    range_s = int(end - start) + 1
    queries = _dashboard_queries()
    assert len(queries) > 30
    # Line panels from the pedestrian camera, zone panels from the occupancy camera.
    assert [q for q in queries if "vigie_published_zone_" in q[2]]
    empty = [
        f"{dashboard} / {title}: {expression}"
        for dashboard, title, expression in queries
        if not _has_data(prometheus, _substitute(expression, range_s), start, end)
    ]
    assert not empty, "queries without data:\n" + "\n".join(empty)
    # And no zone figure for the camera whose purpose measures no zone (docs/privacy.md rules 1 and 7).
    zone_of_the_line_camera = f'vigie_published_zone_occupancy_max{{camera="{CAMERA_ID}"}}'
    assert not _has_data(prometheus, zone_of_the_line_camera, start, end)


def test_a_citizen_objects_with_the_button_of_the_camera_page(published_film: PublishedFilm) -> None:
    """The camera's public page in a browser (reached from the QR code on the sign): its object button
    pauses the camera, the receipt page says so, and ingest stops analysing it. On the second camera, once
    the film is counted and published (last in this module: it changes no figure the others read)."""
    film = published_film
    browser_path = chromium()  # only this test needs it: skipped without it, except on CI
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = f"{film.platform.urls['registry']}/cameras/{ZONE_CAMERA_ID}"
            citizen = Citizen(browser.new_page(), page)
            citizen.open_the_camera_page()
            requested_at = time.time()
            receipt = citizen.object()
        finally:
            browser.close()
    assert receipt["camera_id"] == ZONE_CAMERA_ID
    recorded, until = int(receipt["recorded_at"]), int(receipt["paused_until"])
    assert abs(recorded - requested_at) < 2
    assert until - recorded == PAUSE_S
    public = film.client.get(f"{film.platform.urls['registry']}/v1/public/cameras/{ZONE_CAMERA_ID}")
    assert public.json()["state"] == "paused_by_objection"
    deadline = time.monotonic() + 5
    analysing = 1.0
    while analysing and time.monotonic() < deadline:
        ingest = scrape(film.client, film.platform.urls["ingest"])
        analysing = total(ingest, "vigie_ingest_camera_analysed", camera=ZONE_CAMERA_ID)
        time.sleep(0.1)
    assert analysing == 0, "ingest still analyses the camera the citizen objected to"
