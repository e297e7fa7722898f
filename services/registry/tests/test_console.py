"""The operator console in process (the registry's whole HTTP surface, in-memory buckets and views): signing
in with a one-time link, sessions, forgery protection, the lines and zones saved through the API's code path
(policy republished, change audited with the operator and the motive), the scene view asked for and read,
errors said next to their field, both languages. The same with a real nats-server: test_console_service.py."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI
from markupsafe import escape
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditPublisher, MemoryAuditSink, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_core.policy import decode_policy
from vigie_proto.v1.policy_pb2 import CameraPolicy
from vigie_registry.console.app import COOKIE
from vigie_registry.console.signin import (
    ConsoleSessions,
    SignInLinks,
    SignInProblem,
    SignInRefusedError,
    console_keys,
    console_link,
)
from vigie_registry.http import mount_registry
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ReceiptSigner
from vigie_registry.public.i18n import catalogue
from vigie_registry.publication import MemoryKeyValueBucket
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore, SourceCipher
from vigie_registry.views import MemoryViewReader

from .conftest import CIPHER_KEY, QUICK_AUDIT, Clock, declaration, publisher_of
from .test_views import JPEG, image_result

EN = catalogue("en", "vigie_registry.console")
FR = catalogue("fr", "vigie_registry.console")
BASE = "http://registry.test"
MOTIVE = "drawing the counting line of the north gate"


@dataclass
class Console:
    client: httpx.AsyncClient
    settings: RegistrySettings
    clock: Clock
    sink: MemoryAuditSink
    bucket: MemoryKeyValueBucket
    views: MemoryViewReader
    store: RegistryStore
    issuer: LocalTokenIssuer

    def link(self, operator: str = "operator-9") -> str:
        return console_link(self.settings, operator=operator, base_url=BASE, clock=self.clock)

    async def sign_in(self, operator: str = "operator-9") -> str:
        """Open a link; the session's cookie (the client keeps it too)."""
        response = await self.client.get(self.link(operator))
        assert response.status_code == 303, response.text
        return self.client.cookies[COOKIE]

    async def declare(self, camera_id: str = "north-gate", status: str = "active", **changes: Any) -> None:
        admin = {
            "Authorization": f"Bearer {self.issuer.mint('operator-7', ['registry:admin'])}",
            "X-Vigie-Motive": "declaring a camera",
        }
        body = {"id": camera_id, **declaration(**changes), "status": status}
        response = await self.client.post("/v1/cameras", json=body, headers=admin)
        assert response.status_code == 201, response.text

    async def form_token(self, path: str = "/console/cameras/north-gate") -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="form_token" value="([0-9a-f]{64})"', page.text)
        assert found is not None
        return found.group(1)

    async def policy(self, camera_id: str = "north-gate") -> CameraPolicy:
        value, _ = await self.bucket.read(camera_id)
        assert value is not None
        return decode_policy(camera_id, value)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings = RegistrySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3",  # type: ignore[arg-type]
        receipt_key="r" * 32,  # type: ignore[arg-type]
    )
    store = await RegistryStore.open(
        settings.database_url.get_secret_value(), cipher=SourceCipher(CIPHER_KEY)
    )
    clock = Clock(datetime.now(UTC))
    registry = CollectorRegistry()
    bucket = MemoryKeyValueBucket()
    publisher = publisher_of(store, bucket, MemoryKeyValueBucket(), registry, clock)
    issuer = LocalTokenIssuer.generate()
    sink = MemoryAuditSink()
    audit = AuditPublisher("registry", sink, settings=QUICK_AUDIT)
    await audit.start()
    views = MemoryViewReader()
    root = FastAPI()
    mount_registry(
        root,
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=settings,
        signer=ReceiptSigner(b"r" * 32),
        metrics=RegistryMetrics(registry),
        clock=clock,
        views=views,
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=root), base_url=BASE, headers={"Accept-Language": "en"}
        ) as client:
            yield Console(client, settings, clock, sink, bucket, views, store, issuer)
    finally:
        await audit.close()
        await store.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _changed(segment: str) -> str:
    """``segment`` with its first character changed (the last one may only carry padding bits)."""
    return ("B" if segment[0] == "A" else "A") + segment[1:]


def with_part(link: str, index: int, part: str) -> str:
    """``link`` with part ``index`` of its token (header, payload, signature) replaced by ``part``."""
    base, token = link.split("token=")
    parts = token.split(".")
    parts[index] = part
    return f"{base}token={'.'.join(parts)}"


def line_form(token: str, motive: str = MOTIVE, **fields: str) -> dict[str, str]:
    return {
        "form_token": token,
        "motive": motive,
        "line-0-id": "gate",
        "line-0-points": "0.1,0.5 0.9,0.5",
        "line-0-directions": "both",
        "line-1-id": "kerb",
        "line-1-points": "0.2,0.8 0.8,0.75",
        "line-1-directions": "left_to_right",
        "zone-0-id": "",
        "zone-0-points": "",
        **fields,
    }


# -- signing in ------------------------------------------------------------------------------------------


async def test_a_link_signs_in_once(console: Console) -> None:
    await console.declare()
    link = console.link()
    assert link.startswith(f"{BASE}/console/sign-in?token=")
    response = await console.client.get(link)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/?lang=en"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/console"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain http on one machine; https: see below
    home = await console.client.get("/console/")
    assert home.status_code == 200
    assert escape(EN("cameras.title")) in home.text
    assert 'data-camera="north-gate"' in home.text
    assert escape(EN("state.active")) in home.text
    assert escape(EN("site.signed_in_as", operator="operator-9")) in home.text

    # Used: said so, and no session is opened.
    console.client.cookies.clear()
    again = await console.client.get(link)
    assert again.status_code == 400
    assert escape(EN("sign_in.problem.used")) in again.text
    assert COOKIE not in again.cookies


async def test_an_expired_or_forged_link_says_so(console: Console) -> None:
    link = console.link()
    console.clock.advance(console.settings.console.link_ttl_s + 1)
    expired = await console.client.get(link)
    assert expired.status_code == 400
    assert escape(EN("sign_in.problem.expired")) in expired.text
    assert "set-cookie" not in expired.headers

    fresh = console.link()
    # Another operator in the payload, a changed signature, an unsigned token: all forged.
    claims = jwt.decode(fresh.split("token=")[1], options={"verify_signature": False})
    for forged in (
        with_part(fresh, 1, _b64url(json.dumps({**claims, "sub": "operator-1"}).encode())),
        with_part(fresh, 2, _changed(fresh.split(".")[-1])),
        f"{BASE}/console/sign-in?token={jwt.encode(claims, '', algorithm='none')}",
    ):
        refused = await console.client.get(forged)
        assert refused.status_code == 400, forged
        assert escape(EN("sign_in.problem.forged")) in refused.text, forged
    malformed = await console.client.get("/console/sign-in?token=abc", headers={"Accept-Language": "fr"})
    assert escape(FR("sign_in.problem.malformed")) in malformed.text
    # Another registry's key.
    other = SignInLinks(b"x" * 32, 600, console.clock).mint("operator-9")
    assert EN("sign_in.problem.forged") in (await console.client.get(f"/console/sign-in?token={other}")).text
    # The link still works after those.
    assert (await console.client.get(fresh)).status_code == 303


async def test_without_a_session_nothing_is_shown_or_done(console: Console) -> None:
    await console.declare()
    home = await console.client.get("/console")
    assert (home.status_code, home.headers["location"]) == (308, "/console/")
    for path in ("/console/", "/console/cameras/north-gate"):
        response = await console.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/sign-in?lang=en"
    sign_in = await console.client.get("/console/sign-in")
    assert sign_in.status_code == 401
    assert "console-link" in sign_in.text
    assert "/oidc/start" not in sign_in.text  # no provider configured
    assert (await console.client.get("/console/oidc/start")).status_code == 404
    posted = await console.client.post("/console/cameras/north-gate/geometry", data=line_form("0" * 64))
    assert posted.status_code == 401
    assert escape(EN("sign_in.problem.signed_out")) in posted.text
    picture = await console.client.get("/console/cameras/north-gate/view.jpg?motive=x")
    assert picture.status_code == 303
    # A cookie signed by another key, or expired, is no session.
    sessions = ConsoleSessions(b"y" * 32, 3600, console.clock)
    _, forged = sessions.open("operator-9", ["registry:admin"])
    console.client.cookies.set(COOKIE, forged)
    assert (await console.client.get("/console/")).status_code == 303
    console.client.cookies.clear()
    await console.sign_in()
    console.clock.advance(console.settings.console.session_ttl_s + 1)
    assert (await console.client.get("/console/")).status_code == 303


def test_a_link_minted_by_a_clock_a_little_ahead_works_until_its_end(console: Console) -> None:
    key = console_keys(b"k" * 32).link
    ahead = Clock(datetime.fromtimestamp(console.clock() + 59, UTC))
    links = SignInLinks(key, 600, console.clock)
    assert links.redeem(SignInLinks(key, 600, ahead).mint("operator-9")) == "operator-9"
    ahead.advance(2)
    with pytest.raises(SignInRefusedError) as too_far:
        links.redeem(SignInLinks(key, 600, ahead).mint("operator-9"))
    assert too_far.value.problem is SignInProblem.EXPIRED
    # Its end is the minting clock's: 600 s after it was minted, not 660.
    ahead.advance(-61)
    token = SignInLinks(key, 600, ahead).mint("operator-9")
    console.clock.advance(600)
    with pytest.raises(SignInRefusedError) as ended:
        links.redeem(token)
    assert ended.value.problem is SignInProblem.EXPIRED


async def test_a_link_is_no_session_and_a_session_no_link(console: Console) -> None:
    cookie = await console.sign_in()
    console.client.cookies.clear()
    as_link = await console.client.get(f"/console/sign-in?token={cookie}")
    assert as_link.status_code == 400
    assert escape(EN("sign_in.problem.forged")) in as_link.text
    assert COOKIE not in as_link.cookies
    console.client.cookies.set(COOKIE, console.link().split("token=")[1])
    assert (await console.client.get("/console/")).status_code == 303
    # Even under one key, the audience tells them apart.
    links, sessions = (
        SignInLinks(b"k" * 32, 600, console.clock),
        ConsoleSessions(b"k" * 32, 3600, console.clock),
    )
    _, session = sessions.open("operator-9", ["registry:admin"])
    with pytest.raises(SignInRefusedError) as refused:
        links.redeem(session)
    assert refused.value.problem is SignInProblem.FORGED
    assert sessions.read(links.mint("operator-9")) is None
    assert sessions.read(session) is not None


async def test_signing_out_ends_the_session_even_for_its_cookie(console: Console) -> None:
    cookie = await console.sign_in()
    token = await console.form_token("/console/")
    response = await console.client.post("/console/sign-out", data={"form_token": token})
    assert response.status_code == 200
    assert escape(EN("signed_out.text")) in response.text
    assert "max-age=0" in response.headers["set-cookie"].lower()
    console.client.cookies.clear()
    console.client.cookies.set(COOKIE, cookie)
    assert (await console.client.get("/console/")).status_code == 303


async def test_the_cookie_is_secure_over_https(console: Console) -> None:
    response = await console.client.get(console.link().replace(BASE, "https://registry.test"))
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


# -- forgery, headers ------------------------------------------------------------------------------------


async def test_forms_without_the_session_token_or_from_another_site_are_refused(console: Console) -> None:
    await console.declare()
    await console.sign_in()
    token = await console.form_token()
    url = "/console/cameras/north-gate/geometry"
    before = await console.policy()
    for data, headers in (
        (line_form(""), {}),
        (line_form("0" * 64), {}),
        ({k: v for k, v in line_form(token).items() if k != "form_token"}, {}),
        (line_form(token), {"Sec-Fetch-Site": "cross-site"}),
        (line_form(token), {"Origin": "https://elsewhere.example"}),
    ):
        response = await console.client.post(url, data=data, headers=headers)
        assert response.status_code == 403, (data.get("form_token"), headers)
        assert escape(EN("error.forbidden")) in response.text
    # Another session's token.
    other = ConsoleSessions(b"z" * 32, 3600, console.clock)
    session, _ = other.open("operator-9", ["registry:admin"])
    response = await console.client.post(url, data=line_form(other.form_token(session)))
    assert response.status_code == 403
    for path in ("/console/sign-out", "/console/cameras/north-gate/view-requests"):
        assert (await console.client.post(path, data={"motive": MOTIVE})).status_code == 403
    assert await console.policy() == before
    assert [action_name(e.action) for e in console.sink.events()] == ["config_create"]


async def test_console_pages_carry_a_strict_content_security_policy(console: Console) -> None:
    await console.declare()
    await console.sign_in()
    for path in ("/console/", "/console/cameras/north-gate", "/console/sign-in", "/console/nowhere"):
        response = await console.client.get(path)
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy, path
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["cache-control"] == "no-store"
    page = (await console.client.get("/console/cameras/north-gate")).text
    assert "<script>" not in page
    assert " style=" not in page
    assert "http://" not in page.replace(BASE, "")
    assert re.findall(r'<script src="([^"]+)"', page) == ["/console/static/console.js"]
    script = await console.client.get("/console/static/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    css = await console.client.get("/console/static/console.css")
    assert css.headers["content-type"].startswith("text/css")
    assert (await console.client.get("/console/static/other.js")).status_code == 404


# -- lines and zones ---------------------------------------------------------------------------------------


async def test_saved_lines_are_published_and_audited_with_the_operator_and_motive(console: Console) -> None:
    await console.declare(purpose="traffic_flow_statistics")
    await console.sign_in("operator-9")
    token = await console.form_token()
    fields = line_form(
        token,
        **{"zone-0-id": "junction", "zone-0-points": "0.1,0.1 0.5,0.1 0.5,0.4 0.1,0.4"},
    )
    response = await console.client.post("/console/cameras/north-gate/geometry", data=fields)
    assert response.status_code == 303, response.text
    page = await console.client.get(response.headers["location"])
    assert escape(EN("geometry.saved", version=2)) in page.text
    assert 'role="status"' in page.text

    policy = await console.policy()
    lines = {line.id: line for line in policy.lines}
    assert set(lines) == {"gate", "kerb"}
    assert (lines["kerb"].start.x, lines["kerb"].start.y) == pytest.approx((0.2, 0.8))
    assert [z.id for z in policy.zones] == ["junction"]
    assert len(policy.zones[0].polygon) == 4
    events = console.sink.events()[1:]
    assert [action_name(e.action) for e in events] == ["config_update", "policy_change"]
    for event in events:
        assert event.actor == "operator-9"
        assert event.motive == MOTIVE
    assert events[0].details["changed"] == "lines,zones"

    # Deleting a line: the others stay.
    token = await console.form_token()
    fields = line_form(token, motive="the kerb line is not needed", **{"line-1-delete": "1"})
    fields |= {"zone-0-id": "junction", "zone-0-points": "0.1,0.1 0.5,0.1 0.5,0.4 0.1,0.4"}
    assert (await console.client.post("/console/cameras/north-gate/geometry", data=fields)).status_code == 303
    assert [line.id for line in (await console.policy()).lines] == ["gate"]


async def test_errors_are_said_next_to_their_field(console: Console) -> None:
    await console.declare()
    await console.sign_in()
    token = await console.form_token()
    before = await console.policy()
    url = "/console/cameras/north-gate/geometry"
    cases = {
        "line-0-points": ("0.1,0.5", EN("field.line_points", n=1)),
        "line-1-points": ("0.2,0.8 1.5,0.75", EN("field.bad_point", pair="1.5,0.75")),
        "line-1-id": ("gate", EN("field.duplicate_id", id="gate")),
    }
    for name, (value, message) in cases.items():
        response = await console.client.post(url, data=line_form(token, **{name: value}))
        assert response.status_code == 422, name
        error_id = f"{name}-error"
        assert f'aria-describedby="{error_id}' in response.text, name
        found = re.search(rf'<p class="field-error" id="{error_id}">(.*?)</p>', response.text)
        assert found is not None, name
        assert escape(message) in found.group(1), name
        assert 'aria-invalid="true"' in response.text
        assert escape(EN("geometry.fix")) in response.text
        assert f'<a href="#{name}">' in response.text, name
    crossing = await console.client.post(
        url, data=line_form(token, **{"zone-0-id": "x", "zone-0-points": "0,0 1,1 1,0 0,1"})
    )
    assert crossing.status_code == 422
    assert escape(EN("field.zone_crossing")) in crossing.text
    missing = await console.client.post(url, data=line_form(token, motive="  "))
    assert missing.status_code == 422
    assert escape(EN("field.motive_missing")) in missing.text
    # A privacy rule refuses it (zones on a pedestrian-counting camera): the rule's words, next to the zone.
    refused = await console.client.post(
        url, data=line_form(token, **{"zone-0-id": "lawn", "zone-0-points": "0.1,0.1 0.5,0.1 0.5,0.4"})
    )
    assert refused.status_code == 422
    assert "zones need an output measured in zones" in refused.text
    # The typed values are shown again.
    assert 'value="lawn"' in refused.text
    assert await console.policy() == before


# -- scene views ---------------------------------------------------------------------------------------------


async def test_a_view_is_asked_for_then_shown_with_its_read_audited(console: Console) -> None:
    await console.declare()
    await console.sign_in()
    page = await console.client.get("/console/cameras/north-gate")
    assert escape(EN("view.none")) in page.text
    token = await console.form_token()
    url = "/console/cameras/north-gate/view-requests"
    bad = await console.client.post(url, data={"form_token": token, "motive": "", "sample_seconds": "5"})
    assert bad.status_code == 422
    assert escape(EN("field.motive_missing")) in bad.text
    assert escape(EN("field.sample_range", low=10, high=600)) in bad.text
    asked = await console.client.post(
        url, data={"form_token": token, "motive": MOTIVE, "sample_seconds": "30"}
    )
    assert asked.status_code == 303
    page = await console.client.get(asked.headers["location"])
    assert escape(EN("view.asked")) in page.text
    assert "A view has been asked for: inference is building it" in page.text
    request = (await console.policy()).view_request
    assert request.sample_seconds == 30
    [event] = [e for e in console.sink.events() if e.details.get("changed") == "view_request"]
    assert (event.actor, event.motive) == ("operator-9", MOTIVE)
    too_soon = await console.client.post(url, data={"form_token": token, "motive": MOTIVE})
    assert too_soon.status_code == 429
    assert "was asked for too recently" in too_soon.text

    console.views.publish("north-gate", image_result("north-gate", request.request_id).SerializeToString())
    page = await console.client.get("/console/cameras/north-gate")
    assert escape(EN("view.ready")) in page.text
    assert "view.jpg" not in page.text  # not before a motive is given
    page = await console.client.get("/console/cameras/north-gate", params={"motive": "placing the gate line"})
    found = re.search(r'<img src="([^"]+)"', page.text)
    assert found is not None
    src = found.group(1).replace("&amp;", "&")
    assert 'viewBox="0 0 1000 562"' in page.text  # 1280 x 720
    picture = await console.client.get(src)
    assert picture.status_code == 200
    assert picture.content == JPEG
    assert picture.headers["content-type"] == "image/jpeg"
    read = console.sink.events()[-1]
    assert (action_name(read.action), read.actor, read.motive) == (
        "data_read",
        "operator-9",
        "placing the gate line",
    )
    assert (await console.client.get("/console/cameras/north-gate/view.jpg?motive=")).status_code == 422


async def test_a_camera_not_analysed_has_no_view(console: Console) -> None:
    await console.declare(status="draft")
    await console.sign_in()
    token = await console.form_token()
    response = await console.client.post(
        "/console/cameras/north-gate/view-requests", data={"form_token": token, "motive": MOTIVE}
    )
    assert response.status_code == 409
    assert escape(EN("field.view_not_active")) in response.text
    assert (await console.client.get("/console/cameras/nowhere")).status_code == 404


# -- languages, the link from the command line --------------------------------------------------------------


async def test_french_by_default_from_the_browser_and_switchable(console: Console) -> None:
    await console.declare()
    await console.sign_in()
    french = await console.client.get("/console/cameras/north-gate", headers={"Accept-Language": "fr-FR"})
    assert '<html lang="fr">' in french.text
    assert escape(FR("geometry.heading")) in french.text
    assert 'href="/console/cameras/north-gate?lang=en"' in french.text
    english = await console.client.get(
        "/console/cameras/north-gate?lang=en", headers={"Accept-Language": "fr"}
    )
    assert '<html lang="en">' in english.text
    assert escape(EN("geometry.heading")) in english.text


def test_the_link_needs_the_receipt_key_and_a_pseudonym(tmp_path: Path) -> None:
    settings = RegistrySettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.sqlite3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="receipt_key"):
        console_link(settings, base_url=BASE)
    keyed = settings.model_copy(update={"receipt_key": RegistrySettings(receipt_key="k" * 32).receipt_key})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no e-mail"):
        console_link(keyed, operator="someone@ville.example", base_url=BASE)
    with pytest.raises(ValueError, match="base_url"):
        console_link(keyed)


def test_the_command_prints_a_link(tmp_path: Path) -> None:
    environment = {
        "VIGIE_REGISTRY_RECEIPT_KEY": "k" * 32,
        "VIGIE_REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/r.sqlite3",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "vigie_registry", "console-link", "--operator", "op-1", "--base-url", BASE],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert re.fullmatch(rf"{BASE}/console/sign-in\?token=[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){{2}}", link)
    token = link.split("token=")[1]
    # A JWT any JWT library reads with the key derived from the receipt key.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"vigie-registry console sign-in link key/2"
    ).derive(b"k" * 32)
    assert key == console_keys(b"k" * 32).link
    claims = jwt.decode(token, key, algorithms=["HS256"], audience="vigie-registry/console/sign-in-link")
    assert claims["sub"] == "op-1"
    assert claims["exp"] - claims["iat"] == 600
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    links = SignInLinks(key, 600)
    assert links.redeem(token) == "op-1"
    failed = subprocess.run(
        [sys.executable, "-m", "vigie_registry", "console-link", "--base-url", BASE],
        capture_output=True,
        text=True,
        env={k: v for k, v in environment.items() if k != "VIGIE_REGISTRY_RECEIPT_KEY"},
        timeout=60,
        check=False,
    )
    assert failed.returncode == 2
    assert "receipt_key" in failed.stderr
