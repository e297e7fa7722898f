"""Bearer tokens: verification with a local key and with a JWKS URL, and the FastAPI scope dependency."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from fastapi import Depends, FastAPI
from pydantic import SecretStr, ValidationError

from vigie_core.auth import (
    AuthSettings,
    AuthUnavailableError,
    InvalidTokenError,
    LocalTokenIssuer,
    Principal,
    TokenVerifier,
    _main,
    install_authentication,
    require_scopes,
)


def local_verifier() -> tuple[TokenVerifier, LocalTokenIssuer]:
    issuer = LocalTokenIssuer.generate()
    return TokenVerifier(AuthSettings(), local_issuer=issuer), issuer


def test_a_minted_token_gives_its_principal() -> None:
    verifier, issuer = local_verifier()
    principal = verifier.verify(issuer.mint("dpo-7", ["audit:read", "stats:read"]))
    assert principal.subject == "dpo-7"
    assert principal.scopes == {"audit:read", "stats:read"}
    assert principal.issuer == "vigie-embedded"
    assert principal.token_id


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (lambda i: i.mint("dpo", [], now=time.time() - 3600), "expired"),
        (lambda i: LocalTokenIssuer.generate().mint("dpo", []), "signature"),
        (
            lambda i: LocalTokenIssuer(i._private_key, issuer="elsewhere", audience="vigie").mint("dpo", []),
            "issuer",
        ),
        (
            lambda i: LocalTokenIssuer(i._private_key, issuer="vigie-embedded", audience="other").mint(
                "dpo", []
            ),
            "audience",
        ),
        (
            lambda i: jwt.encode({"sub": "dpo", "exp": time.time() + 60}, "s" * 32, algorithm="HS256"),
            "algorithm",
        ),
        (lambda i: jwt.encode({"sub": "dpo"}, None, algorithm="none"), "algorithm"),
        (lambda i: i.mint("", []), "subject"),
        (lambda i: "definitely.not.a-token", "not valid"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(make_token: Any, message: str) -> None:
    verifier, issuer = local_verifier()
    with pytest.raises(InvalidTokenError, match=message):
        verifier.verify(make_token(issuer))


def test_a_shared_secret_algorithm_cannot_be_configured() -> None:
    with pytest.raises(ValidationError, match="only asymmetric"):
        AuthSettings(algorithms=("HS256",))
    with pytest.raises(ValidationError, match="not both"):
        AuthSettings(jwks_url="https://idp.example/jwks", local_key=SecretStr("x"))


@pytest.fixture
def identity_provider() -> Iterator[tuple[str, LocalTokenIssuer, dict[str, int]]]:
    """A JWKS endpoint on loopback, as a city's identity provider publishes its keys."""
    issuer = LocalTokenIssuer.generate(issuer="https://idp.example", audience="vigie-audit")
    hits = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits["count"] += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", issuer, hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_tokens_verify_against_a_jwks_url_with_cached_keys(
    identity_provider: tuple[str, LocalTokenIssuer, dict[str, int]],
) -> None:
    url, issuer, hits = identity_provider
    settings = AuthSettings(issuer="https://idp.example", audience="vigie-audit", jwks_url=url)
    verifier = TokenVerifier.from_settings(settings)
    assert verifier.local_issuer is None
    for _ in range(3):
        assert verifier.verify(issuer.mint("op-9", ["audit:read"])).subject == "op-9"
    assert hits["count"] == 1
    with pytest.raises(InvalidTokenError, match="no key"):
        verifier.verify(
            LocalTokenIssuer.generate(issuer="https://idp.example", audience="vigie-audit").mint("x", [])
        )


def test_tokens_of_other_asymmetric_algorithms_verify_with_a_jwks() -> None:
    # An ES256 identity provider, its JWKS given to PyJWT's client directly.
    key = generate_private_key(SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    client = jwt.PyJWKClient("http://unused.invalid")
    client.fetch_data = lambda: {"keys": [{**jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"}]}  # type: ignore[method-assign]
    verifier = TokenVerifier(AuthSettings(), jwks_client=client)
    token = jwt.encode(
        {
            "sub": "op-3",
            "iss": "vigie-embedded",
            "aud": "vigie",
            "exp": time.time() + 60,
            "iat": time.time(),
            "scp": ["a", "b"],
        },
        key,
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    assert verifier.verify(token).scopes == {"a", "b"}


def test_an_unreachable_identity_provider_is_not_the_callers_fault() -> None:
    settings = AuthSettings(jwks_url="http://127.0.0.1:9/jwks.json", jwks_timeout_s=1)
    verifier = TokenVerifier.from_settings(settings)
    token = LocalTokenIssuer.generate().mint("op-1", [])
    with pytest.raises(AuthUnavailableError, match="cannot fetch"):
        verifier.verify(token)


async def test_the_dependency_gives_401_403_and_the_principal() -> None:
    verifier, issuer = local_verifier()
    app = FastAPI()
    install_authentication(app, verifier)

    @app.get("/reports")
    def reports(principal: Annotated[Principal, Depends(require_scopes("stats:read"))]) -> dict[str, str]:
        return {"subject": principal.subject}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        missing = await client.get("/reports")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="vigie"'
        bad = await client.get("/reports", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        scoped = {"Authorization": f"Bearer {issuer.mint('op-1', ['audit:read'])}"}
        forbidden = await client.get("/reports", headers=scoped)
        assert forbidden.status_code == 403
        assert forbidden.headers["www-authenticate"].endswith(
            'error="insufficient_scope", scope="stats:read"'
        )
        allowed = {"Authorization": f"Bearer {issuer.mint('op-1', ['stats:read'])}"}
        assert (await client.get("/reports", headers=allowed)).json() == {"subject": "op-1"}


async def test_a_protected_route_without_a_verifier_fails_loudly() -> None:
    app = FastAPI()

    @app.get("/x")
    def x(principal: Annotated[Principal, Depends(require_scopes())]) -> str:
        return principal.subject

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        with pytest.raises(RuntimeError, match="install_authentication"):
            await client.get("/x", headers={"Authorization": "Bearer a.b.c"})


def test_keygen_and_mint_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["keygen"]) == 0
    key_file = tmp_path / "key"
    key_file.write_text(capsys.readouterr().out)
    assert _main(["mint", "--key-file", str(key_file), "--subject", "dpo-1", "--scope", "audit:read"]) == 0
    token = capsys.readouterr().out.strip()
    settings = AuthSettings(local_key=SecretStr(key_file.read_text()))
    assert TokenVerifier.from_settings(settings).verify(token).scopes == {"audit:read"}
