"""The transparency page over HTTP (in process): both languages, what a camera's page says, escaping of
what the administrator typed, 404 pages, the object button's form token and cross-site refusal, the abuse
limits shared with the JSON endpoint, receipts and their verification, and the page's security headers."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from vigie_core.policy import decide, decode_policy
from vigie_proto.v1.audit_pb2 import AuditAction
from vigie_registry.camera import SceneViewRequest
from vigie_registry.public.i18n import catalogue
from vigie_registry.purposes import PURPOSES
from vigie_registry.views import PUBLIC_VIEW_TTL_S

from .conftest import SITE_URL, Site
from .test_views import JPEG, image_result, refused_result

FR = catalogue("fr")
EN = catalogue("en")


class _Page(HTMLParser):
    """The text a person reads (scripts and styles would be skipped; there are none) and the elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def parse(response: httpx.Response) -> _Page:
    page = _Page()
    page.feed(response.text)
    return page


def token_of(response: httpx.Response) -> str:
    [field] = parse(response).find("input", name="token")
    return field["value"]


async def press(site: Site, camera_id: str = "north-gate", **headers: str) -> httpx.Response:
    """Load the camera's page and press its button, as a browser would (same client, same origin)."""
    page = await site.client.get(f"/cameras/{camera_id}", headers=headers)
    return await site.client.post(
        f"/cameras/{camera_id}/objection",
        data={"token": token_of(page), "lang": "en"},
        headers={"Sec-Fetch-Site": "same-origin", **headers},
    )


# -- the list and the languages -------------------------------------------------------------------------


async def test_the_list_shows_cameras_in_operation_with_their_state_in_french_by_default(site: Site) -> None:
    await site.declare("north-gate")
    await site.declare("south-gate", location={"address": "2 quai Est", "latitude": 45.75, "longitude": 4.84})
    await site.declare("draft-cam", status="draft", name="Not yet")
    response = await site.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-language"] == "fr"
    assert "accept-language" in response.headers["vary"].lower()
    page = parse(response)
    assert page.find("html", lang="fr")
    assert FR("index.heading") in page.text
    rows = [a["data-camera"] for a in page.find("tr") if "data-camera" in a]
    assert rows == ["north-gate", "south-gate"]  # the draft is not in operation
    assert "Not yet" not in page.text
    assert page.text.count(FR("state.analysing")) >= 2
    # The map: one marker per camera, drawn here (no outside tiles).
    assert response.text.count('class="marker marker-analysing"') == 2
    assert page.find("a", href="/cameras/north-gate?lang=fr")


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        ("", "en-GB,en;q=0.9", "en"),
        ("", "de-DE,fr;q=0.5,en;q=0.4", "fr"),
        ("?lang=en", "fr-FR", "en"),
        ("?lang=fr", "en-US", "fr"),
        ("?lang=xx", "en", "en"),
        ("", "", "fr"),
    ],
)
async def test_the_language_comes_from_the_url_then_the_browser(
    site: Site, query: str, accept: str, expected: str
) -> None:
    await site.declare("north-gate")
    for path in ("/", "/cameras/north-gate", "/cameras/nowhere"):
        response = await site.client.get(f"{path}{query}", headers={"Accept-Language": accept})
        page = parse(response)
        assert page.find("html", lang=expected), (path, query, accept)
        assert response.headers["content-language"] == expected
        heading = {"fr": FR, "en": EN}[expected]("site.title")
        assert heading in page.text
        # The switch offers both languages, the current one marked, each named in its own language.
        assert page.find("a", hreflang="fr", lang="fr")
        assert page.find("a", hreflang="en", lang="en")
        [current] = [a for a in page.find("a") if a.get("aria-current") == "page"]
        assert current["hreflang"] == expected


async def test_an_empty_registry_says_so(site: Site) -> None:
    page = parse(await site.client.get("/?lang=en"))
    assert EN("index.empty") in page.text
    assert not page.find("svg")


# -- one camera -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_a_camera_page_says_what_why_basis_retention_zones_state_contacts_and_rights(
    site: Site, language: str
) -> None:
    t = {"fr": FR, "en": EN}[language]
    await site.declare(
        "north-gate",
        purpose="traffic_flow_statistics",
        lines=[{"id": "gate", "start": [0.1, 0.5], "end": [0.9, 0.5], "directions": "left_to_right"}],
        zones=[{"id": "square", "polygon": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]}],
        retention={"statistics_days": 90},
    )
    response = await site.client.get(f"/cameras/north-gate?lang={language}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"  # the form's token is this client's
    page = parse(response)
    text = page.text
    for expected in (
        "North gate",
        "1 place de la Mairie, Lyon",
        t("purpose.traffic_flow_statistics.title"),
        t("purpose.traffic_flow_statistics.description"),
        t("output.line_crossings"),
        t("basis.public_task"),
        "Délibération 2026-12",
        "DPIA-2026-004",
        t("camera.retention_statistics", duration=t.duration(90 * 86_400)),
        t("camera.retention_tracks", duration=t.duration(600)),
        t("camera.line", id="gate", directions=t("direction.left_to_right")),
        t("camera.zone", id="square"),
        t("camera.masks", count=1),
        t("camera.now_analysing"),
        t("state.analysing"),
        "Ville de Lyon",
        "mobilite@ville.example",
        "dpo@ville.example",
        t("camera.rights_anonymous"),
        t("camera.object_button"),
    ):
        assert expected in text, expected
    assert page.find("a", href="mailto:dpo@ville.example")
    [form] = page.find("form", method="post")
    assert form["action"] == "/cameras/north-gate/objection"
    assert page.find("input", type="hidden", name="lang", value=language)
    # The zones drawn in the picture's frame (320 x 180).
    assert page.find("polygon", **{"class": "zone", "points": "160.0,90.0 288.0,90.0 288.0,162.0"})
    assert page.find("polyline", **{"class": "line", "points": "32.0,90.0 288.0,90.0"})


async def test_a_paused_camera_says_until_when_and_offers_no_button_when_objection_is_restricted(
    site: Site,
) -> None:
    await site.declare("north-gate")
    await site.client.post("/v1/public/cameras/north-gate/objections")
    page = parse(await site.client.get("/cameras/north-gate?lang=en"))
    assert EN("state.paused_by_objection") in page.text
    until = site.clock() + 900
    assert EN("camera.now_paused", time=EN.datetime(until, _zone(site))) in page.text

    await site.declare(
        "metro",
        objection={"enabled": False},
        legal={
            "basis": "legal_obligation",
            "dpia_reference": "DPIA-9",
            "rights_restriction_legal_text": "Code des transports art. L2251-4-2",
        },
    )
    page = parse(await site.client.get("/cameras/metro?lang=en"))
    assert EN("camera.object_restricted", text="Code des transports art. L2251-4-2") in page.text
    assert not page.find("form", method="post")


def _zone(site: Site) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(site.settings.public.timezone)


async def test_text_the_administrator_typed_is_escaped(site: Site) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    await site.declare(
        "north-gate",
        name=f"Gate {attack}",
        description=attack,
        location={"address": attack, "latitude": 45.76, "longitude": 4.83},
        controller={"name": attack, "email": "mobilite@ville.example", "address": attack},
        legal={"basis": "public_task", "act": attack, "dpia_reference": attack},
    )
    for path in ("/", "/cameras/north-gate", "/cameras/north-gate?lang=en"):
        response = await site.client.get(path)
        assert "<script" not in response.text.lower()
        assert "<img" not in response.text.lower()
        assert "&lt;script&gt;" in response.text
        assert attack in parse(response).text  # shown as text, as typed
    svg = await site.client.get("/cameras/north-gate/sign.svg")
    assert "<script" not in svg.text
    assert "&lt;script&gt;" in svg.text


async def test_unknown_draft_and_malformed_cameras_get_the_404_page(site: Site) -> None:
    await site.declare("draft-cam", status="draft")
    for path in ("/cameras/nowhere", "/cameras/draft-cam", "/cameras/bad%20id", "/cameras/nowhere/sign.svg"):
        for language, t in (("fr", FR), ("en", EN)):
            response = await site.client.get(f"{path}?lang={language}")
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html")
            page = parse(response)
            assert page.find("html", lang=language)
            assert t("error.not_found_title") in page.text
    response = await site.client.get("/no/such/page?lang=en")
    assert response.status_code == 404
    assert EN("error.page_not_found") in parse(response).text
    # A control character in the path: no mount takes it, the root answers, still with the page's 404.
    response = await site.client.get("/cameras/%0A0?lang=en")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert EN("error.page_not_found") in parse(response).text
    api = await site.client.get("/v1/no-such-route")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    wrong = await site.client.delete("/cameras/draft-cam")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]


async def test_the_page_loads_nothing_from_elsewhere_and_runs_no_script(site: Site) -> None:
    await site.declare("north-gate")
    for path in ("/", "/cameras/north-gate", "/receipts/verify", "/cameras/nowhere"):
        response = await site.client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "form-action 'self'" in csp
        assert "script-src" not in csp  # falls back to 'none'
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert "set-cookie" not in response.headers
        page = parse(response)
        assert not page.find("script")
        for tag, attributes in page.elements:
            for name in ("src", "srcset", "action"):
                value = attributes.get(name)
                assert value is None or value.startswith("/"), (tag, attributes)
            if tag == "link":
                assert attributes["href"].startswith("/"), attributes
    css = await site.client.get("/static/site.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text  # no font or image fetched from anywhere


# -- the object button ----------------------------------------------------------------------------------


async def test_the_button_pauses_the_camera_and_shows_a_receipt_that_verifies(site: Site) -> None:
    await site.declare("north-gate")
    response = await press(site)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    page = parse(response)
    assert EN("receipt.heading") in page.text
    assert page.find("html", lang="en")
    receipt = {
        name: page.find("input", type="hidden", name=name)[0]["value"]
        for name in ("receipt_id", "camera_id", "recorded_at", "paused_until", "signature")
    }
    assert re.fullmatch(r"[0-9a-f]{32}", receipt["receipt_id"])
    assert receipt["receipt_id"] in page.text
    assert receipt["signature"] in page.text
    assert f"{SITE_URL}/v1/public/receipts/verify" in page.text  # how to verify through the API
    assert int(receipt["paused_until"]) == int(site.clock()) + site.settings.objection.default_pause_s

    # The policy the other services read forbids analysis for the window, and only for it.
    value, _ = await site.bucket.read("north-gate")
    assert value is not None
    policy = decode_policy("north-gate", value)
    until = int(receipt["paused_until"])
    assert policy.paused_until.seconds == until
    assert not decide("north-gate", policy, site.clock() + 1).analyse
    assert decide("north-gate", policy, until + 1).analyse
    page = parse(await site.client.get("/cameras/north-gate?lang=en"))
    assert EN("state.paused_by_objection") in page.text

    # The receipt verifies through the page's form and through the API.
    verdict = await site.client.post("/receipts/verify", data={**receipt, "lang": "en"})
    assert EN("verify.valid_recorded") in parse(verdict).text
    api = await site.client.post(
        "/v1/public/receipts/verify",
        json={**receipt, "recorded_at": int(receipt["recorded_at"]), "paused_until": until},
    )
    assert api.json() == {"valid": True, "recorded": True}
    forged = await site.client.post("/receipts/verify", data={**receipt, "paused_until": str(until + 3600)})
    assert FR("verify.invalid") in parse(forged).text
    malformed = await site.client.post(
        "/receipts/verify", data={**receipt, "receipt_id": "nope", "lang": "en"}
    )
    assert malformed.status_code == 422
    assert EN("verify.malformed", field=EN("verify.receipt_id")) in parse(malformed).text

    # Audited as the JSON endpoint's objections are, with nothing about the person.
    await site.client.get("/")  # let the audit publisher run
    [event] = [e for e in site.sink.events() if e.action == AuditAction.AUDIT_ACTION_OBJECTION_HONOURED]
    assert event.actor == "public:anonymous"
    assert [(r.kind, r.id) for r in event.records] == [("objection", receipt["receipt_id"])]
    assert "192.0.2.10" not in str(event)
    assert site.metric("vigie_registry_objections_total", {"outcome": "paused"}) == 1


async def _paused(site: Site) -> bool:
    camera = await site.store.camera("north-gate")
    assert camera is not None
    return camera.paused_until is not None


@pytest.mark.parametrize(
    "problem", ["another camera", "another client", "expired", "tampered", "missing", "not a token"]
)
async def test_a_form_token_that_is_not_this_pages_is_refused_and_the_page_offers_a_fresh_one(
    site: Site, problem: str
) -> None:
    await site.declare("north-gate")
    await site.declare("south-gate")
    client = "192.0.2.10"
    token = site.tokens.issue("north-gate", client)
    if problem == "another camera":
        token = site.tokens.issue("south-gate", client)
    elif problem == "another client":
        token = site.tokens.issue("north-gate", "198.51.100.7")
    elif problem == "expired":
        site.clock.advance(site.settings.public.form_token_ttl_s + 1)
    elif problem == "tampered":
        token = token[:-1] + ("0" if token[-1] != "0" else "1")
    elif problem == "missing":
        token = ""
    else:
        token = "<script>"
    response = await site.client.post(
        "/cameras/north-gate/objection",
        data={"token": token, "lang": "en"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 400
    page = parse(response)
    assert EN("notice.expired") in page.text
    assert token_of(response) != token  # a fresh form: one more press
    assert not await _paused(site)
    assert site.tokens.check(token_of(response), "north-gate", client) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
async def test_a_post_from_another_site_is_refused_by_the_page_and_the_api(
    site: Site, headers: dict[str, str]
) -> None:
    await site.declare("north-gate")
    token = site.tokens.issue("north-gate", "192.0.2.10")
    response = await site.client.post(
        "/cameras/north-gate/objection", data={"token": token, "lang": "en"}, headers=headers
    )
    assert response.status_code == 403
    assert EN("error.cross_site") in parse(response).text
    api = await site.client.post("/v1/public/cameras/north-gate/objections", headers=headers)
    assert api.status_code == 403
    assert not await _paused(site)


async def test_same_origin_posts_by_host_or_public_address_are_accepted_without_fetch_metadata(
    site: Site,
) -> None:
    await site.declare("north-gate")
    for origin in ("http://test", SITE_URL):
        token = site.tokens.issue("north-gate", "192.0.2.10")
        response = await site.client.post(
            "/cameras/north-gate/objection", data={"token": token}, headers={"Origin": origin}
        )
        assert response.status_code == 200, (origin, response.text)


async def test_the_page_and_the_api_share_one_rate_limit(site: Site) -> None:
    await site.declare("north-gate")
    assert (await site.client.post("/v1/public/cameras/north-gate/objections")).status_code == 201
    assert (await press(site)).status_code == 200
    assert (await site.client.post("/v1/public/cameras/north-gate/objections")).status_code == 201
    limited = await press(site)  # the fourth in a minute, limit 3/minute
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert EN("error.rate_limited_title") in parse(limited).text
    assert (await site.client.post("/v1/public/cameras/north-gate/objections")).status_code == 429
    assert site.metric("vigie_registry_objections_rate_limited_total") == 2
    # Another client (another address seen by the ingress) still may.
    other = await press(site, **{"X-Forwarded-For": "198.51.100.7"})
    assert other.status_code == 200
    # Extended, never stacked: still one pause of at most the maximum.
    camera = await site.store.camera("north-gate")
    assert camera is not None
    assert camera.paused_until == int(site.clock()) + site.settings.objection.default_pause_s


async def test_objections_the_camera_cannot_honour_get_a_page_that_says_why(site: Site) -> None:
    await site.declare(
        "metro",
        objection={"enabled": False},
        legal={
            "basis": "legal_obligation",
            "dpia_reference": "DPIA-9",
            "rights_restriction_legal_text": "Code des transports art. L2251-4-2",
        },
    )
    token = site.tokens.issue("metro", "192.0.2.10")
    response = await site.client.post("/cameras/metro/objection", data={"token": token, "lang": "en"})
    assert response.status_code == 409
    assert EN("camera.object_restricted", text="Code des transports art. L2251-4-2") in parse(response).text
    await site.declare("north-gate")
    await site.client.post("/v1/cameras/north-gate/status", json={"status": "paused"}, headers=site.admin)
    token = site.tokens.issue("north-gate", "192.0.2.10")
    response = await site.client.post("/cameras/north-gate/objection", data={"token": token, "lang": "fr"})
    assert response.status_code == 409
    assert FR("camera.object_not_active") in parse(response).text
    missing = await site.client.post("/cameras/nowhere/objection", data={"token": token})
    assert missing.status_code == 404


async def test_a_body_that_is_not_the_form_is_refused(site: Site) -> None:
    await site.declare("north-gate")
    token = site.tokens.issue("north-gate", "192.0.2.10")
    as_json = await site.client.post("/cameras/north-gate/objection", json={"token": token})
    assert as_json.status_code == 400
    huge = await site.client.post("/cameras/north-gate/objection", data={"token": token, "pad": "x" * 5000})
    assert huge.status_code == 400
    assert not await _paused(site)


# -- the scene view -------------------------------------------------------------------------------------

VIEW_MOTIVE = {"motive": "drawing the counting line of the north gate"}


async def ask_view(site: Site, camera_id: str = "north-gate") -> str:
    """An administrator's request, through the API; its id."""
    response = await site.client.post(
        f"/v1/cameras/{camera_id}/view-requests", json=VIEW_MOTIVE, headers=site.admin
    )
    assert response.status_code == 202, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def view_image(page: _Page) -> list[dict[str, str]]:
    return page.find("image", **{"class": "view"})


async def ready_view(site: Site, camera_id: str = "north-gate") -> str:
    request_id = await ask_view(site, camera_id)
    site.views.publish(camera_id, image_result(camera_id, request_id).SerializeToString())
    return request_id


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_a_ready_view_is_shown_under_the_lines_and_zones_with_what_they_count(
    site: Site, language: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = {"fr": FR, "en": EN}[language]
    await site.declare(
        "north-gate",
        purpose="traffic_flow_statistics",
        lines=[
            {"id": "gate", "start": [0.1, 0.5], "end": [0.9, 0.5], "directions": "left_to_right"},
            {"id": "lane", "start": [0.5, 0.1], "end": [0.5, 0.4], "classes": ["bicycle"]},
        ],
        zones=[{"id": "square", "polygon": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]}],
    )
    await ready_view(site)
    response = await site.client.get(f"/cameras/north-gate?lang={language}")
    assert response.status_code == 200
    page = parse(response)
    # The picture is the diagram's background, in the picture's proportions (1280 x 720: 320 x 180).
    [svg] = page.find("svg", **{"class": "diagram diagram-view"})
    assert svg["viewbox"] == "0 0 320.0 180.0"
    assert svg["role"] == "img"
    [image] = view_image(page)
    assert image["href"].startswith("/cameras/north-gate/view.jpg?v=")
    assert (image["width"], image["height"], image["preserveaspectratio"]) == ("320.0", "180.0", "none")
    # Over it, the lines with the direction each counts (one head: one way; two: both), and the zones.
    assert page.find("polyline", **{"class": "line", "points": "32.0,90.0 288.0,90.0"})
    assert page.find("polygon", **{"class": "zone", "points": "160.0,90.0 288.0,90.0 288.0,162.0"})
    assert len(page.find("polygon", **{"class": "arrow-head"})) == 3
    # The gate's arrow crosses it downwards: its right-hand side, walking from start to end.
    assert page.find("polyline", **{"class": "arrow", "points": "160.0,70.0 160.0,110.0"})
    # The text alternative says what is drawn: each line and zone by name and what it counts.
    made = t.datetime(image_result("north-gate", "").built_at.ToSeconds(), _zone(site))
    counted = t("format.list_separator").join(
        t(f"class.{c}") for c in PURPOSES["traffic_flow_statistics"].object_classes
    )
    text = page.text
    for expected in (
        t("camera.view_title"),
        t("camera.view_desc", date=made),
        t("camera.drawn_line", id="gate", classes=counted, directions=t("direction.left_to_right")),
        t("camera.drawn_line", id="lane", classes=t("class.bicycle"), directions=t("direction.both")),
        t("camera.drawn_zone", id="square", classes=counted),
        t("camera.drawn_masks", count=1),
        # When it was made, and that the next one replaces it.
        t("camera.view_caption", date=made),
        t("camera.retention_view", date=made),
        t("camera.view_exception"),
    ):
        assert expected in text, expected

    picture = await site.client.get(image["href"])
    assert picture.status_code == 200
    assert picture.content == JPEG
    assert picture.headers["content-type"] == "image/jpeg"
    assert picture.headers["cache-control"] == "public, max-age=60"
    etag = picture.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert image["href"].endswith(etag.strip('"')[:16])
    assert "default-src 'none'" in picture.headers["content-security-policy"]
    assert picture.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in picture.headers
    same = await site.client.get("/cameras/north-gate/view.jpg", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    # Public: no login, no audit event per read, and nothing of the visitor in the logs.
    assert not [e for e in site.sink.events() if e.action == AuditAction.AUDIT_ACTION_DATA_READ]
    assert "192.0.2.10" not in caplog.text


async def test_the_diagram_without_a_view_shows_the_directions_too(site: Site) -> None:
    await site.declare(
        "north-gate",
        lines=[{"id": "gate", "start": [0.1, 0.5], "end": [0.9, 0.5], "directions": "right_to_left"}],
    )
    page = parse(await site.client.get("/cameras/north-gate?lang=en"))
    [svg] = page.find("svg", **{"class": "diagram"})
    assert svg["viewbox"] == "0 0 320.0 180.0"
    assert not view_image(page)
    [head] = page.find("polygon", **{"class": "arrow-head"})
    assert head["points"].startswith("160.0,70.0 ")  # pointing up: to the line's left-hand side
    assert EN("camera.diagram_desc") in page.text
    assert (
        EN(
            "camera.drawn_line",
            id="gate",
            classes=EN("class.person"),
            directions=EN("direction.right_to_left"),
        )
        in page.text
    )


async def _no_view_shown(site: Site, status: int = 404) -> None:
    for language, t in (("fr", FR), ("en", EN)):
        response = await site.client.get(f"/cameras/north-gate?lang={language}")
        assert response.status_code == 200
        page = parse(response)
        assert not view_image(page)
        assert t("camera.diagram_desc") in page.text
        assert t("camera.view_exception") not in page.text
    picture = await site.client.get("/cameras/north-gate/view.jpg?lang=en")
    assert picture.status_code == status
    assert picture.headers["content-type"].startswith("text/html")
    assert picture.headers["cache-control"] == "no-cache"


async def test_no_picture_without_an_accepted_ready_view(site: Site) -> None:
    await site.declare("north-gate")
    await _no_view_shown(site)  # never asked
    request_id = await ask_view(site)
    await _no_view_shown(site)  # pending
    # An answer to another request (a replaced one, say): ignored, as by the API.
    # (The site reads a camera's view at most once every PUBLIC_VIEW_TTL_S: the clock moves past it.)
    site.views.publish("north-gate", image_result("north-gate", "a-request-never-made").SerializeToString())
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    await _no_view_shown(site)
    site.views.publish("north-gate", image_result("other-cam", request_id).SerializeToString())
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    await _no_view_shown(site)
    site.views.publish("north-gate", refused_result("north-gate", request_id).SerializeToString())
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    await _no_view_shown(site)
    admin = await site.client.get("/v1/cameras/north-gate/view", headers=site.admin)
    assert admin.json()["state"] == "refused"
    # Ready, then replaced by a new request: the older picture is no longer the camera's.
    site.views.publish("north-gate", image_result("north-gate", request_id).SerializeToString())
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    assert view_image(parse(await site.client.get("/cameras/north-gate")))
    site.clock.advance(3600)
    await ask_view(site)
    await _no_view_shown(site)
    # The views cannot be read: the page is shown without its picture, the picture is unavailable.
    site.views.fail = True
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    await _no_view_shown(site, status=503)


async def test_visitors_make_the_site_read_a_view_once_every_few_seconds(site: Site) -> None:
    """Page loads and picture downloads by anonymous visitors read VIEWS (up to 256 KiB a view) at most once
    every PUBLIC_VIEW_TTL_S per camera; a new request is read at once."""
    await site.declare("north-gate")
    request_id = await ask_view(site)
    site.views.publish("north-gate", image_result("north-gate", request_id).SerializeToString())
    before = site.views.reads
    for _ in range(5):
        assert (await site.client.get("/cameras/north-gate")).status_code == 200
        assert (await site.client.get("/cameras/north-gate/view.jpg")).status_code == 200
    assert site.views.reads == before + 1
    site.clock.advance(PUBLIC_VIEW_TTL_S)
    assert (await site.client.get("/cameras/north-gate/view.jpg")).status_code == 200
    assert site.views.reads == before + 2
    site.clock.advance(3600)  # past the registry's minimum interval between two requests
    await ask_view(site)
    assert (await site.client.get("/cameras/north-gate/view.jpg")).status_code == 404  # pending: read again
    assert site.views.reads == before + 3


async def test_only_cameras_whose_page_is_public_show_their_view(site: Site) -> None:
    await site.declare("north-gate")
    await ready_view(site)
    # Paused: still in operation, its page and its picture are public.
    await site.client.post("/v1/cameras/north-gate/status", json={"status": "paused"}, headers=site.admin)
    page = parse(await site.client.get("/cameras/north-gate"))
    assert view_image(page)
    assert (await site.client.get("/cameras/north-gate/view.jpg")).status_code == 200
    # Retired: no page, no picture, though the view is still there for the API.
    await site.client.post("/v1/cameras/north-gate/status", json={"status": "retired"}, headers=site.admin)
    admin = await site.client.get("/v1/cameras/north-gate/view", headers=site.admin)
    assert admin.json()["state"] == "ready"
    for path in ("/cameras/north-gate", "/cameras/north-gate/view.jpg"):
        response = await site.client.get(f"{path}?lang=en")
        assert response.status_code == 404, path
        assert EN("error.not_found_title") in parse(response).text
    # A draft, even with an answered request: no page, no picture.
    await site.declare("draft-cam", status="draft")
    wanted = SceneViewRequest(request_id="r-1", requested_at=int(site.clock()), sample_seconds=60)
    await site.store.change("draft-cam", lambda c: replace(c, view_request=wanted), now=int(site.clock()))
    site.views.publish("draft-cam", image_result("draft-cam", "r-1").SerializeToString())
    admin = await site.client.get("/v1/cameras/draft-cam/view", headers=site.admin)
    assert admin.json()["state"] == "ready"
    for path in ("/cameras/draft-cam", "/cameras/draft-cam/view.jpg", "/cameras/bad%20id/view.jpg"):
        assert (await site.client.get(path)).status_code == 404, path
