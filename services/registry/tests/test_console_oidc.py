"""Signing in to the console through an OpenID Connect provider (a fake one behind httpx's mock transport:
metadata, token endpoint, keys): the authorization code flow with PKCE, state and nonce; the role that grants
admin; every way it must fail, said in words."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from markupsafe import escape
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_registry.console.app import COOKIE
from vigie_registry.http import mount_registry
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ReceiptSigner
from vigie_registry.public.i18n import catalogue
from vigie_registry.publication import MemoryKeyValueBucket
from vigie_registry.settings import RegistrySettings
from vigie_registry.storage.store import RegistryStore, SourceCipher

from .conftest import CIPHER_KEY, QUICK_AUDIT, Clock, publisher_of

EN = catalogue("en", "vigie_registry.console")
ISSUER = "https://id.ville.example/realms/city"
BASE = "http://registry.test"
CLIENT_ID = "vigie-console"
SECRET = "console-client-secret"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Provider:
    """The city's identity provider, as far as the console sees it."""

    claims: dict[str, Any] = field(default_factory=lambda: {"sub": "agent-42", "roles": ["vigie-admin"]})
    challenges: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, nonce)
    tokens_asked: list[dict[str, str]] = field(default_factory=list)
    signing_key: Any = KEY
    audience: str = CLIENT_ID
    nonce: str | None = None

    def authorize(self, url: str, code: str = "good-code") -> dict[str, str]:
        """What the provider does when the operator signs in there: remember the challenge for the code."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        self.challenges[code] = (query["code_challenge"], query["nonce"])
        return query

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/realms/city/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
                    "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
                    "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
                },
            )
        if path.endswith("/certs"):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
            return httpx.Response(200, json={"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
        if path.endswith("/token"):
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.tokens_asked.append(form)
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401, json={"error": "invalid_client"})
            code = form.get("code", "")
            if code not in self.challenges:
                return httpx.Response(400, json={"error": "invalid_grant"})
            challenge, nonce = self.challenges.pop(code)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).decode().rstrip("=") != challenge:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "PKCE"})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "aud": self.audience,
                "iat": now,
                "exp": now + 300,
                "nonce": self.nonce or nonce,
                **self.claims,
            }
            token = jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": "k1"})
            return httpx.Response(200, json={"id_token": token, "access_token": "x", "token_type": "Bearer"})
        return httpx.Response(404)


@dataclass
class Oidc:
    client: httpx.AsyncClient
    provider: Provider

    async def start(self) -> dict[str, str]:
        response = await self.client.get("/console/oidc/start")
        assert response.status_code == 303, response.text
        return self.provider.authorize(response.headers["location"])


@pytest.fixture
async def oidc(tmp_path: Path) -> AsyncIterator[Oidc]:
    settings = RegistrySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3",  # type: ignore[arg-type]
        receipt_key="r" * 32,  # type: ignore[arg-type]
        console={"oidc": {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": SECRET}},  # type: ignore[arg-type]
    )
    store = await RegistryStore.open(
        settings.database_url.get_secret_value(), cipher=SourceCipher(CIPHER_KEY)
    )
    clock = Clock(datetime.now(UTC))
    registry = CollectorRegistry()
    publisher = publisher_of(store, MemoryKeyValueBucket(), MemoryKeyValueBucket(), registry, clock)
    audit = AuditPublisher("registry", MemoryAuditSink(), settings=QUICK_AUDIT)
    await audit.start()
    provider = Provider()
    root = FastAPI()
    mount_registry(
        root,
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=LocalTokenIssuer.generate()),
        settings=settings,
        signer=ReceiptSigner(b"r" * 32),
        metrics=RegistryMetrics(registry),
        clock=clock,
        oidc_transport=httpx.MockTransport(provider.handle),
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=root), base_url=BASE, headers={"Accept-Language": "en"}
        ) as client:
            yield Oidc(client, provider)
    finally:
        await audit.close()
        await store.close()


async def test_an_admin_of_the_city_signs_in_through_the_provider(oidc: Oidc) -> None:
    page = await oidc.client.get("/console/sign-in")
    assert 'href="/console/oidc/start?lang=en"' in page.text
    assert escape(EN("sign_in.oidc")) in page.text

    response = await oidc.client.get("/console/oidc/start")
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{ISSUER}/protocol/openid-connect/auth"
    query = oidc.provider.authorize(response.headers["location"])
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{BASE}/console/oidc/callback"
    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == "openid"
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=lax", "path=/console/oidc"):
        assert attribute in cookie

    back = await oidc.client.get(f"/console/oidc/callback?code=good-code&state={query['state']}")
    assert back.status_code == 200, back.text
    assert '<meta http-equiv="refresh" content="0;url=/console/?lang=en">' in back.text
    session = [h for h in back.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    assert session
    assert "samesite=strict" in session[0].lower()
    [asked] = oidc.provider.tokens_asked
    assert asked["grant_type"] == "authorization_code"
    assert asked["redirect_uri"] == f"{BASE}/console/oidc/callback"
    home = await oidc.client.get("/console/")
    assert home.status_code == 200
    assert escape(EN("site.signed_in_as", operator="agent-42")) in home.text
    # The flow's cookie is spent: the same answer again does not sign in.
    again = await oidc.client.get(f"/console/oidc/callback?code=good-code&state={query['state']}")
    assert again.status_code == 400


async def test_what_the_provider_says_is_checked(oidc: Oidc) -> None:
    # Another state than the one started here (a forged callback).
    await oidc.start()
    forged = await oidc.client.get("/console/oidc/callback?code=good-code&state=not-it")
    assert forged.status_code == 400
    assert escape(EN("sign_in.problem.oidc_state")) in forged.text
    # No flow started at all.
    oidc.client.cookies.clear()
    assert (await oidc.client.get("/console/oidc/callback?code=x&state=y")).status_code == 400
    # The operator refused at the provider.
    query = await oidc.start()
    refused = await oidc.client.get(f"/console/oidc/callback?error=access_denied&state={query['state']}")
    assert refused.status_code == 400
    assert escape(EN("sign_in.problem.oidc_refused")) in refused.text

    def fails(expected_status: int, key: str) -> Any:
        async def run() -> None:
            query = await oidc.start()
            response = await oidc.client.get(f"/console/oidc/callback?code=good-code&state={query['state']}")
            assert response.status_code == expected_status, response.text
            assert escape(EN(key)) in response.text
            assert not [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]

        return run()

    # Not an admin: the role is missing.
    oidc.provider.claims = {"sub": "agent-43", "roles": ["viewer"]}
    await fails(403, "sign_in.problem.oidc_not_admin")
    oidc.provider.claims = {"sub": "agent-42", "roles": ["vigie-admin"]}
    # Another nonce, another audience, another key.
    oidc.provider.nonce = "replayed"
    await fails(502, "sign_in.problem.oidc_failed")
    oidc.provider.nonce = None
    oidc.provider.audience = "another-client"
    await fails(502, "sign_in.problem.oidc_failed")
    oidc.provider.audience = CLIENT_ID
    oidc.provider.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await fails(502, "sign_in.problem.oidc_failed")
    oidc.provider.signing_key = KEY
    # A code the provider does not know.
    query = await oidc.start()
    unknown = await oidc.client.get(f"/console/oidc/callback?code=other&state={query['state']}")
    assert unknown.status_code == 502
    assert "refused the sign-in code" in unknown.text
    assert (await oidc.client.get("/console/")).status_code == 303


async def test_an_address_as_subject_is_made_a_pseudonym(oidc: Oidc) -> None:
    oidc.provider.claims = {"sub": "agent@ville.example", "roles": "vigie-admin other"}
    query = await oidc.start()
    back = await oidc.client.get(f"/console/oidc/callback?code=good-code&state={query['state']}")
    assert back.status_code == 200
    home = await oidc.client.get("/console/")
    assert "agent@ville.example" not in home.text
    assert "oidc-" in home.text
