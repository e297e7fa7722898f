"""The statistics API, in process: authentication, errors naming the field, JSON and CSV, pages, audit."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import random
import shutil
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.api.models import CrossingsPage, DwellPage, OccupancyPage
from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.reports import parse_window_report
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, random_report
from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier

W = 1200
DAY = "2023-11-15"
CAMERAS = ("cam-a", "cam-b")


@dataclass
class Api:
    client: httpx.AsyncClient
    sink: MemoryAuditSink
    issuer: LocalTokenIssuer

    def token(self, *scopes: str, subject: str = "operator-7") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(subject, scopes or ('stats:read',))}"}


async def released_store(store: StatisticsStore, settings: AggregationSettings, windows: int = 6) -> None:
    rng = random.Random(11)
    parts = [
        parse_window_report(
            f"vigie.events.{camera}",
            random_report(camera, T0 + i * W, rng).SerializeToString(),
            None,
            publication_window_s=W,
            now=T0,
        )
        for i in range(windows)
        for camera in CAMERAS
    ]
    await store.apply_parts(parts, now=T0)
    job = ReleaseJob(
        store,
        ConfigSiteDirectory(settings.cameras),
        settings,
        noise=SystemNoise(),
        clock=lambda: T0 + 86_400 + 3600.0,
    )
    await job.run_once()


SETTINGS = AggregationSettings(
    cameras=[CameraSiteConfig(id=c, site="centre") for c in CAMERAS], max_page_size=500
)


@pytest.fixture(scope="module")
def released_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with a released day (built once: each test works on a copy)."""
    path = tmp_path_factory.mktemp("released") / "statistics.sqlite3"

    async def build() -> None:
        store = await StatisticsStore.open(f"sqlite+aiosqlite:///{path}")
        try:
            await released_store(store, SETTINGS)
        finally:
            await store.close()

    # In a thread of its own: the tests' event loops must not see this one.
    worker = threading.Thread(target=lambda: asyncio.run(build()))
    worker.start()
    worker.join()
    return path


@pytest.fixture
async def api(released_day: Path, tmp_path: Path) -> AsyncIterator[Api]:
    copy = tmp_path / "statistics.sqlite3"
    shutil.copyfile(released_day, copy)
    store = await StatisticsStore.open(f"sqlite+aiosqlite:///{copy}")
    issuer = LocalTokenIssuer.generate()
    sink = MemoryAuditSink()
    quick = AuditPublishSettings(
        confirm_timeout_s=0.5, drain_timeout_s=0.5, retry_initial_s=0.01, retry_max_s=0.05
    )
    audit = AuditPublisher("aggregation", sink, settings=quick)
    await audit.start()
    app = statistics_app(
        engine=store.engine,
        sites=ConfigSiteDirectory(SETTINGS.cameras),
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=SETTINGS,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, sink, issuer)
    finally:
        await audit.close()
        await store.close()


def day_params(**extra: Any) -> dict[str, Any]:
    return {
        "site": "centre",
        "from": f"{DAY}T00:00:00Z",
        "to": f"{DAY}T02:00:00Z",
        "motive": "traffic study",
        **extra,
    }


async def test_no_token_is_401_and_a_token_without_the_scope_is_403(api: Api) -> None:
    response = await api.client.get("/crossings", params=day_params())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await api.client.get(
        "/crossings", params=day_params(), headers={"Authorization": "Bearer abc"}
    )
    assert response.status_code == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    response = await api.client.get("/crossings", params=day_params(), headers=api.token("audit:read"))
    assert response.status_code == 403
    assert "stats:read" in response.json()["detail"]
    assert api.sink.messages == []  # nothing was read, nothing to audit


async def test_a_site_scope_reads_only_its_site(api: Api) -> None:
    """stats:read:site:<site> gives that site's figures only; another site is a permission violation."""
    own = api.token("stats:read:site:centre")
    response = await api.client.get("/crossings", params=day_params(), headers=own)
    assert response.status_code == 200
    assert {item["site"] for item in response.json()["items"]} == {"centre"}
    sites = (await api.client.get("/sites", headers=own)).json()["sites"]
    assert [site["site"] for site in sites] == ["centre"]
    other = api.token("stats:read:site:north")
    assert (await api.client.get("/sites", headers=other)).json()["sites"] == []
    for params in (day_params(), {**day_params(site=None), "camera": "cam-a"}):
        params = {k: v for k, v in params.items() if v is not None}
        response = await api.client.get("/crossings", params=params, headers=other)
        assert response.status_code == 403, response.text
        assert "centre" in response.json()["detail"]
    events = api.sink.events()
    assert [action_name(e.action) for e in events] == [
        "data_read",
        "permission_violation",
        "permission_violation",
    ]
    assert all(e.details["sites"] == "centre" for e in events[1:])
    assert set(events[1].camera_ids) == set(CAMERAS)
    assert list(events[2].camera_ids) == ["cam-a"]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        (day_params(**{"from": f"{DAY}T00:00:00"}), "from", "timezone"),
        (day_params(to="yesterday"), "to", "datetime"),
        (day_params(to=f"{DAY}T00:00:00Z"), "to", "after from"),
        (day_params(to="2024-01-15T00:00:00Z"), "to", "31 days"),
        (day_params(motive=" "), "motive", "say why"),
        (day_params(camrea="cam-a"), "camrea", "unknown parameter"),
        (day_params(level="camera", direction="each"), "direction", "per line"),
        (day_params(level="camera", line="l1"), "line", "level=line"),
        (day_params(object_class="unicorn"), "object_class", "person"),
        (day_params(limit=0), "limit", "greater than"),
        (day_params(limit=501), "limit", "at most 500"),
        (day_params(cursor="!!!"), "cursor", "not a cursor"),
        (day_params(camera="cam-a"), "site", "either site"),
        (day_params(site="a b"), "site", "site id"),
        (day_params(granularity="hour"), "granularity", "window"),
    ],
)
async def test_a_malformed_request_is_a_422_naming_the_field(
    api: Api, params: dict[str, Any], field: str, words: str
) -> None:
    response = await api.client.get("/crossings", params=params, headers=api.token())
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == field and words in e["msg"] for e in errors), errors


def _forged(*key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _forged(2**70, "centre", "cam-a", "l1", 0, 0, ""),  # beyond BIGINT: the driver refused it (500)
        _forged(1e400, "centre", "cam-a", "l1", 0, 0, ""),  # infinity: int() raised OverflowError (500)
        _forged(1, "centre", "cam-a", "l1", 2**15, 0, ""),  # beyond SMALLINT
        _forged(1, "centre", "cam-a", "l1", 0, -1, ""),
        _forged(1, "centre\u0000", "cam-a", "l1", 0, 0, ""),  # NUL: PostgreSQL refuses it in text
        _forged(1, "centre", "cam-a", "l1", True, 0, ""),
        _forged("1", "centre", "cam-a", "l1", 0, 0, ""),
        _forged(1, "centre", "cam-a", "l1", 0, 0, "x" * 65),
        _forged(1, "centre", "cam-a", "l1", 0, 0),
    ],
    ids=["bigint", "infinity", "smallint", "negative", "nul", "bool", "text", "long", "short"],
)
async def test_a_forged_cursor_is_a_422_not_a_database_error(api: Api, cursor: str) -> None:
    response = await api.client.get("/crossings", params=day_params(cursor=cursor), headers=api.token())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == "cursor"


async def test_unknown_site_or_camera_is_404_and_an_unacceptable_format_406(api: Api) -> None:
    response = await api.client.get("/crossings", params=day_params(site="nowhere"), headers=api.token())
    assert response.status_code == 404
    params = day_params()
    del params["site"]
    response = await api.client.get("/occupancy", params={**params, "camera": "cam-z"}, headers=api.token())
    assert response.status_code == 404
    headers = {**api.token(), "Accept": "application/xml"}
    response = await api.client.get("/crossings", params=day_params(), headers=headers)
    assert response.status_code == 406


async def test_json_figures_say_whether_they_are_suppressed_and_their_coverage(api: Api) -> None:
    response = await api.client.get(
        "/crossings",
        params=day_params(direction="each", object_class="each", limit=500),
        headers=api.token(),
    )
    assert response.status_code == 200
    page = CrossingsPage.model_validate(response.json())
    assert {i.direction for i in page.items} == {"left_to_right", "right_to_left"}
    assert len({i.object_class for i in page.items}) == 6
    assert all((i.count is None) == i.suppressed for i in page.items)
    assert all(i.reason == "disclosure_control" for i in page.items if i.suppressed)
    assert all(i.count is None or i.count == 0 or i.count >= 11 for i in page.items)
    assert any(i.suppressed for i in page.items)
    assert any(not i.suppressed for i in page.items)
    assert all(i.coverage.ratio == 1.0 and i.coverage.cameras == 1 for i in page.items)
    assert (page.disclosure.threshold, page.disclosure.window_seconds) == (11, W)

    site = await api.client.get("/crossings", params=day_params(level="site"), headers=api.token())
    totals = CrossingsPage.model_validate(site.json()).items
    assert [i.camera for i in totals] == [None] * 6
    assert all(i.coverage.cameras == 2 and i.coverage.period_seconds == 2 * W for i in totals)

    for path, model in (("/occupancy", OccupancyPage), ("/dwell", DwellPage)):
        response = await api.client.get(path, params=day_params(object_class="each"), headers=api.token())
        assert response.status_code == 200, response.text
        assert model.model_validate(response.json()).items


async def test_a_day_is_one_figure_per_cell(api: Api) -> None:
    params = day_params(granularity="day", level="camera", to=f"{DAY}T23:59:59+01:00")
    response = await api.client.get("/crossings", params=params, headers=api.token())
    items = CrossingsPage.model_validate(response.json()).items
    assert [(i.camera, i.period_start.isoformat()) for i in items] == [
        ("cam-a", f"{DAY}T00:00:00+00:00"),
        ("cam-b", f"{DAY}T00:00:00+00:00"),
    ]
    assert all(i.coverage.period_seconds == 86_400 for i in items)


async def test_csv_by_accept_header_or_format_parameter(api: Api) -> None:
    by_header = await api.client.get(
        "/crossings", params=day_params(), headers={**api.token(), "Accept": "text/csv;q=0.9, */*;q=0.1"}
    )
    by_parameter = await api.client.get("/crossings", params=day_params(format="csv"), headers=api.token())
    json_page = await api.client.get("/crossings", params=day_params(), headers=api.token())
    assert by_header.headers["content-type"].startswith("text/csv")
    assert by_header.text == by_parameter.text
    rows = list(csv.DictReader(io.StringIO(by_header.text)))
    items = json_page.json()["items"]
    assert len(rows) == len(items)
    assert [r["count"] for r in rows] == ["" if i["count"] is None else str(i["count"]) for i in items]
    assert rows[0]["period_start"] == f"{DAY}T00:00:00Z"
    assert [action_name(e.action) for e in api.sink.events()] == ["data_export", "data_export", "data_read"]


async def test_pages_follow_the_cursor_to_every_item_once(api: Api) -> None:
    params = day_params(direction="each", object_class="each")
    everything = await api.client.get("/crossings", params={**params, "limit": 500}, headers=api.token())
    expected = everything.json()["items"]
    seen: list[dict[str, Any]] = []
    url: str | None = "/crossings"
    query: dict[str, Any] | None = {**params, "limit": 7}
    pages = 0
    while url is not None:
        response = await api.client.get(url, params=query, headers=api.token())
        body = response.json()
        seen.extend(body["items"])
        pages += 1
        url, query = body["links"]["next"], None
        if url is not None:
            assert response.headers["Link"] == f'<{url}>; rel="next"'
    assert seen == expected
    assert pages == -(-len(expected) // 7)


async def test_every_read_is_audited_with_operator_motive_cameras_and_time_range(api: Api) -> None:
    await api.client.get("/crossings", params=day_params(), headers=api.token(subject="op-42"))
    await api.client.get(
        "/dwell",
        params={"camera": "cam-b", "from": f"{DAY}T00:00:00Z", "to": f"{DAY}T01:00:00Z"},
        headers={**api.token(), "X-Vigie-Motive": "square redesign"},
    )
    first, second = api.sink.events()
    assert (first.actor, first.motive, list(first.camera_ids)) == ("op-42", "traffic study", list(CAMERAS))
    assert first.data_time_range.start.ToSeconds() == T0
    assert first.data_time_range.end.ToSeconds() == T0 + 7200
    assert (action_name(first.action), first.details["format"]) == ("data_read", "json")
    assert (second.motive, list(second.camera_ids)) == ("square redesign", ["cam-b"])
    assert second.records[0].id == "dwell:window:item"


async def test_a_read_that_cannot_be_audited_is_refused(api: Api) -> None:
    api.sink.failures = 10_000
    response = await api.client.get("/crossings", params=day_params(format="csv"), headers=api.token())
    assert response.status_code == 503
    assert "audit" in response.json()["detail"]


async def test_a_token_subject_that_is_not_pseudonymous_is_refused(api: Api) -> None:
    response = await api.client.get(
        "/crossings", params=day_params(), headers=api.token(subject="jean.dupont@example.org")
    )
    assert response.status_code == 403


async def test_the_openapi_document_has_examples_and_the_bearer_scheme(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    assert set(document["paths"]) == {"/crossings", "/occupancy", "/dwell", "/sites"}
    crossings = document["paths"]["/crossings"]["get"]
    assert "text/csv" in crossings["responses"]["200"]["content"]
    assert document["components"]["schemas"]["CrossingsPage"]["examples"]
    assert any(p["name"] == "from" and p.get("examples") for p in crossings["parameters"])
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
