"""Schemathesis against the OpenAPI document: generated requests (valid and not) never get a 5xx, and
every response matches the document; the transparency page (not in the document: HTML) gets the same
with Hypothesis-generated paths, languages, forms and headers. 30 examples per operation keep it short;
VIGIE_FUZZ_EXAMPLES=200 searches harder."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from vigie_core.audit import AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_embedded.testing import ThreadedServer, fuzz_settings
from vigie_registry.declaration import CameraDeclaration, SourceDeclaration
from vigie_registry.http import API_PREFIX, mount_registry
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ReceiptSigner
from vigie_registry.publication import CameraPublisher, MemoryKeyValueBucket
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore

from .conftest import declaration, security_declaration

SETTINGS = RegistrySettings(objection={"rate_limit": "100000/minute"})  # type: ignore[arg-type]


class LiveApi(ThreadedServer):
    """The registry's whole HTTP surface on a free port: the API under /v1, the page at /."""

    def __init__(self, database: Path) -> None:
        self.issuer = issuer = LocalTokenIssuer.generate()

        async def build(stack: contextlib.AsyncExitStack) -> FastAPI:
            store = await RegistryStore.open(f"sqlite+aiosqlite:///{database}")
            now = int(time.time())
            for camera_id, body, status in (
                ("north-gate", declaration(), "active"),
                ("draft-cam", declaration(), "draft"),
                ("station", security_declaration(), "draft"),
            ):
                source = SourceDeclaration.model_validate(body["source"])
                parsed = CameraDeclaration.model_validate({k: v for k, v in body.items() if k != "source"})
                await store.create(camera_id, parsed, status, source, now=now)
            audit = AuditPublisher("registry", MemoryAuditSink())
            await audit.start()
            # The whole HTTP surface, as the service mounts it: the API under /v1, the page at /.
            app = FastAPI()
            mount_registry(
                app,
                store=store,
                publisher=CameraPublisher.for_policy(store, MemoryKeyValueBucket()),
                audit=audit,
                verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
                settings=SETTINGS,
                signer=ReceiptSigner.generate(),
                metrics=RegistryMetrics(CollectorRegistry()),
            )
            stack.push_async_callback(store.close)
            stack.push_async_callback(audit.close)
            return app

        super().__init__(build)

    @property
    def site_url(self) -> str:
        return self.base_url

    @property
    def url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("schemathesis") / "registry.sqlite3") as api:
        yield api


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_generated_request_gets_a_server_error(live_api: LiveApi, mode: GenerationMode) -> None:
    # schemathesis' pytest plugin (from_fixture) reads a pytest internal that pytest 9 removed; its
    # strategies are driven with Hypothesis directly instead.
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    token = live_api.issuer.mint(
        "operator-fuzz", ["registry:admin", "registry:read", "registry:dpo"], ttl_s=3600
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /cameras",
        "PUT /cameras/{camera_id}",
        "POST /public/cameras/{camera_id}/objections",
        "GET /register",
    }
    for operation in operations:
        raw = operation.definition.raw
        if mode == GenerationMode.NEGATIVE and not raw.get("parameters") and "requestBody" not in raw:
            continue  # nothing to make invalid (GET /purposes, GET /public/cameras)

        @given(case=operation.as_strategy(generation_mode=mode))
        @fuzz_settings()
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}", "X-Vigie-Motive": "fuzzing"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        call()


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
# Header values as clients send them: printable ASCII.
_ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
_CAMERA = st.one_of(
    st.sampled_from(["north-gate", "draft-cam", "station", "nowhere"]), _TEXT.map(lambda c: quote(c, safe=""))
)
_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Accept-Language": st.one_of(st.sampled_from(["fr", "en-GB,en;q=0.9", "*", "q=;;,"]), _ASCII),
        "Sec-Fetch-Site": st.sampled_from(["same-origin", "cross-site", "none", ""]),
        "Origin": st.one_of(st.just("null"), _ASCII),
        "X-Forwarded-For": _ASCII,
        "Content-Type": st.sampled_from(
            ["application/x-www-form-urlencoded", "application/json", "multipart/form-data", "text/plain"]
        ),
    },
)


def test_the_transparency_page_never_gets_a_server_error(live_api: LiveApi) -> None:
    paths = st.one_of(
        st.sampled_from(["/", "/receipts/verify", "/static/site.css", "/cameras/"]),
        _CAMERA.map(lambda c: f"/cameras/{c}"),
        _CAMERA.map(lambda c: f"/cameras/{c}/sign.svg"),
        _CAMERA.map(lambda c: f"/cameras/{c}/sign.pdf"),
        _CAMERA.map(lambda c: f"/cameras/{c}/objection"),
    )
    forms = st.dictionaries(
        st.sampled_from(
            ["token", "lang", "receipt_id", "camera_id", "recorded_at", "paused_until", "signature"]
        ),
        _TEXT,
    )

    with httpx.Client(base_url=live_api.site_url, timeout=30) as client:

        @given(
            method=st.sampled_from(["GET", "POST", "PUT"]),
            path=paths,
            lang=st.one_of(st.none(), st.sampled_from(["fr", "en"]), _TEXT),
            form=forms,
            headers=_HEADERS,
        )
        @fuzz_settings(150, shrink=True)
        def call(
            method: str, path: str, lang: str | None, form: dict[str, str], headers: dict[str, str]
        ) -> None:
            params = {} if lang is None else {"lang": lang}
            response = client.request(method, path, params=params, data=form or None, headers=headers)
            assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
            if response.status_code >= 400 or response.headers["content-type"].startswith("text/html"):
                assert response.headers["content-type"].startswith("text/html"), (method, path, response.text)
                assert "default-src 'none'" in response.headers["content-security-policy"]

        call()
