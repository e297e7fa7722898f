"""Only what was measured is published: a camera that counts persons has no figure for cars or buses in the
API (JSON and CSV) nor on /metrics, a one-way line none for the direction it does not count, a report that
does not say counted all six classes and both directions, and a listed dwell bucket nobody fell in is a
zero."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vigie_aggregation import metric_names
from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.metrics import PublishedFigures, SiteWindow
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.reports import parse_window_report
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, window_report
from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier

W = 1200
PERSON, CAR = 1, 3
SIX = {"person", "bicycle", "car", "motorcycle", "bus", "truck"}
SETTINGS = AggregationSettings(
    cameras=[CameraSiteConfig(id=c, site="centre") for c in ("walk", "old")], max_page_size=1000
)
QUERY = {
    "site": "centre",
    "from": "2023-11-15T00:00:00Z",
    "to": "2023-11-15T01:00:00Z",
    "motive": "what was measured",
}


def reports() -> list[Any]:
    """Two windows of a pedestrian camera (persons only, stays in 3 buckets, an exit-only line) and of a
    camera whose reports do not say which classes and directions they counted."""
    found = []
    for i in range(2):
        start = T0 + i * W
        found.append(
            window_report(
                "walk",
                start,
                lines=("l1", "exit"),
                zones=("z1",),
                crossings={("l1", 1, PERSON): 40, ("l1", 2, PERSON): 30, ("exit", 2, PERSON): 35},
                one_way_lines={"exit": 2},
                occupancy={("z1", PERSON): (6000.0, 20)},
                dwell={("z1", PERSON, 0, 60): 25},
                object_classes=(PERSON,),
                dwell_bucket_seconds=(60, 300),
            )
        )
        found.append(
            window_report(
                "old",
                start,
                lines=("l1",),
                crossings={("l1", d, k): 40 for d in (1, 2) for k in (PERSON, CAR)},
            )
        )
    return found


@dataclass
class Published:
    client: httpx.AsyncClient
    headers: dict[str, str]
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]

    async def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get(path, params={**QUERY, **params}, headers=self.headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def rows(self, path: str, **params: str) -> list[dict[str, str]]:
        response = await self.client.get(
            path, params={**QUERY, **params, "format": "csv"}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
async def published(tmp_path: Path) -> AsyncIterator[Published]:
    store = await StatisticsStore.open(f"sqlite+aiosqlite:///{tmp_path}/statistics.sqlite3")
    parts = [
        parse_window_report(
            f"vigie.events.{r.camera_id}", r.SerializeToString(), None, publication_window_s=W, now=T0
        )
        for r in reports()
    ]
    await store.apply_parts(parts, now=T0)
    gauges = PublishedFigures()

    async def expose(window: SiteWindow) -> None:
        gauges.update(window)

    sites = ConfigSiteDirectory(SETTINGS.cameras)
    # The two windows released: the second is the latest on /metrics; then the rest of the day.
    for now, on_window in ((T0 + 2 * W + 400.0, expose), (T0 + 86_400 + 3600.0, None)):
        job = ReleaseJob(
            store, sites, SETTINGS, noise=SystemNoise(), clock=lambda now=now: now, on_window=on_window
        )
        await job.run_once()
    registry = CollectorRegistry()
    registry.register(gauges)
    metrics = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    issuer = LocalTokenIssuer.generate()
    quick = AuditPublishSettings(
        confirm_timeout_s=0.5, drain_timeout_s=0.5, retry_initial_s=0.01, retry_max_s=0.05
    )
    audit = AuditPublisher("aggregation", MemoryAuditSink(), settings=quick)
    await audit.start()
    app = statistics_app(
        engine=store.engine,
        sites=sites,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=SETTINGS,
    )
    headers = {"Authorization": f"Bearer {issuer.mint('operator-7', ('stats:read',))}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            yield Published(client, headers, metrics)
    finally:
        await audit.close()
        await store.close()


def classes_of(items: list[dict[str, Any]], camera: str) -> set[str]:
    return {item["object_class"] for item in items if item["camera"] == camera}


async def test_a_pedestrian_camera_has_no_figure_for_vehicles_in_the_api(published: Published) -> None:
    each = {"object_class": "each", "direction": "each"}
    for granularity in ("window", "day"):
        lines = await published.items("/crossings", granularity=granularity, **each)
        assert classes_of(lines, "walk") == {"person"}
        assert classes_of(lines, "old") == SIX, "a report that does not say counted all six classes"
        cameras = await published.items(
            "/crossings", granularity=granularity, level="camera", object_class="each"
        )
        assert classes_of(cameras, "walk") == {"person"}
    # The total over classes is the total over the classes counted.
    [total] = [
        i
        for i in await published.items("/crossings", direction="each", to="2023-11-15T00:20:00Z")
        if i["camera"] == "walk" and i["direction"] == "left_to_right"
    ]
    assert (total["object_class"], total["count"]) == ("all", 40)
    occupancy = await published.items("/occupancy", object_class="each")
    assert classes_of(occupancy, "walk") == {"person"}
    dwell = await published.items("/dwell", object_class="each", dwell="each", to="2023-11-15T00:20:00Z")
    assert {(i["object_class"], i["dwell"], i["count"]) for i in dwell} == {
        ("person", "0-60", 25),
        ("person", "60-300", 0),  # listed by the reports, nobody stayed that long: zero, not absent
        ("person", "300-", 0),
    }
    # CSV says the same as JSON.
    rows = await published.rows("/crossings", **each)
    json_items = await published.items("/crossings", **each)
    assert [(r["camera"], r["direction"], r["object_class"], r["count"]) for r in rows] == [
        (i["camera"], i["direction"], i["object_class"], "" if i["count"] is None else str(i["count"]))
        for i in json_items
    ]
    assert {r["object_class"] for r in rows if r["camera"] == "walk"} == {"person"}


async def test_metrics_publish_the_same_classes_as_the_api(published: Published) -> None:
    latest = {"from": "2023-11-15T00:20:00Z", "to": "2023-11-15T00:40:00Z"}
    items = await published.items("/crossings", direction="each", object_class="each", **latest)
    api = {
        (i["camera"], i["line"], i["direction"], i["object_class"]): i["count"]
        for i in items
        if not i["suppressed"]
    }
    on_metrics = {
        (labels["camera"], labels["line"], labels["direction"], labels["object_class"]): value
        for (name, label_set), value in published.metrics.items()
        if name == metric_names.PUBLISHED_LINE_CROSSINGS
        for labels in [dict(label_set)]
        if labels["direction"] != "all" and labels["object_class"] != "all"
    }
    assert on_metrics == api
    assert {k for (camera, _, _, k) in on_metrics if camera == "walk"} == {"person"}
    assert not any(
        dict(labels).get("camera") == "walk" and dict(labels).get("object_class") in ("car", "bus")
        for _, labels in published.metrics
    )
    zone = {"site": "centre", "camera": "walk", "zone": "z1"}
    stays = {
        dict(labels)["dwell"]: value
        for (name, labels), value in published.metrics.items()
        if name == metric_names.PUBLISHED_ZONE_DWELL_STAYS
        and dict(labels) == {**zone, "object_class": "person", "dwell": dict(labels)["dwell"]}
    }
    assert stays == {"0-60": 25, "60-300": 0, "300-": 0, "all": 25}


def directions_of(items: list[dict[str, Any]], camera: str, line: str) -> set[str]:
    return {item["direction"] for item in items if item["camera"] == camera and item["line"] == line}


async def test_a_one_way_line_has_no_figure_for_the_direction_it_does_not_count(published: Published) -> None:
    for granularity in ("window", "day"):
        lines = await published.items("/crossings", granularity=granularity, direction="each")
        assert directions_of(lines, "walk", "exit") == {"right_to_left"}
        assert directions_of(lines, "walk", "l1") == {"left_to_right", "right_to_left"}
        assert directions_of(lines, "old", "l1") == {"left_to_right", "right_to_left"}, "did not say: both"
    # The total over directions is the total over the direction counted.
    [total] = [
        i
        for i in await published.items("/crossings", to="2023-11-15T00:20:00Z")
        if i["camera"] == "walk" and i["line"] == "exit"
    ]
    assert (total["direction"], total["object_class"], total["count"]) == ("all", "all", 35)
    # CSV says the same as JSON.
    rows = await published.rows("/crossings", direction="each", object_class="each")
    json_items = await published.items("/crossings", direction="each", object_class="each")
    assert [(r["camera"], r["line"], r["direction"], r["object_class"], r["count"]) for r in rows] == [
        (
            i["camera"],
            i["line"],
            i["direction"],
            i["object_class"],
            "" if i["count"] is None else str(i["count"]),
        )
        for i in json_items
    ]
    assert {r["direction"] for r in rows if r["camera"] == "walk" and r["line"] == "exit"} == {
        "right_to_left"
    }
    # /metrics: the same directions, and the same totals over them.
    on_metrics = {
        labels["direction"]: value
        for (name, label_set), value in published.metrics.items()
        if name == metric_names.PUBLISHED_LINE_CROSSINGS
        for labels in [dict(label_set)]
        if labels.get("camera") == "walk" and labels.get("line") == "exit" and labels["object_class"] == "all"
    }
    assert on_metrics == {"right_to_left": 35, "all": 35}
