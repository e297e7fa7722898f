"""Signing in to the console through the city's OpenID Connect provider: the authorization code flow with
PKCE (S256), a ``state`` and a ``nonce``.

``/console/oidc/start`` keeps the flow's secrets (state, nonce, code verifier) in a short-lived signed cookie
and sends the browser to the provider; ``/console/oidc/callback`` checks the state, exchanges the code at the
token endpoint (with the client secret, when there is one), checks the ID token (the provider's keys, issuer,
audience, expiry, nonce) and reads who signed in and whether the configured claim grants the admin role.
The provider's metadata and keys are fetched over HTTPS with httpx (a transport can be given for tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from vigie_registry.console.signin import OPERATOR_ID
from vigie_registry.settings import OidcSettings

__all__ = ["OidcClient", "OidcError", "OidcFlow", "OidcSignIn", "pkce_challenge"]

_FLOW_FORMAT = b"vigie-console-oidc-flow/1"
_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
FLOW_TTL_S = 600


class OidcError(Exception):
    """The sign-in through the provider failed; the message says why (shown to the operator)."""


@dataclass(frozen=True, slots=True)
class OidcFlow:
    state: str
    nonce: str
    verifier: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class OidcSignIn:
    operator: str
    admin: bool


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _granted(value: Any, wanted: str) -> bool:
    if isinstance(value, str):
        return wanted in value.split()
    if isinstance(value, list):
        return wanted in value
    return False


class OidcClient:
    def __init__(
        self,
        settings: OidcSettings,
        key: bytes,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._key = key
        self._transport = transport
        self._clock = clock
        self._metadata: dict[str, Any] | None = None

    def _client(self, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, timeout=self.settings.timeout_s, auth=auth)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client() as http:
                response = await http.get(url)
                response.raise_for_status()
                found = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise OidcError(f"the identity provider could not be read ({type(error).__name__})") from None
        if not isinstance(found, dict):
            raise OidcError("the identity provider answered something else than a JSON object")
        return found

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            issuer = self.settings.issuer.rstrip("/")
            found = await self._get_json(f"{issuer}/.well-known/openid-configuration")
            if str(found.get("issuer", "")).rstrip("/") != issuer:
                raise OidcError("the identity provider's metadata names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(name), str):
                    raise OidcError(f"the identity provider's metadata lacks {name}")
            self._metadata = found
        return self._metadata

    # -- the flow's cookie -------------------------------------------------------------------------------

    def new_flow(self) -> OidcFlow:
        return OidcFlow(
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(48),
            int(self._clock()) + FLOW_TTL_S,
        )

    def seal(self, flow: OidcFlow) -> str:
        body = base64.urlsafe_b64encode(
            json.dumps([flow.state, flow.nonce, flow.verifier, flow.expires_at]).encode()
        ).decode()
        mac = hmac.new(self._key, _FLOW_FORMAT + b"|" + body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def unseal(self, value: str | None) -> OidcFlow | None:
        if not value or len(value) > 2048 or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        expected = hmac.new(self._key, _FLOW_FORMAT + b"|" + body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return None
        try:
            state, nonce, verifier, expires_at = json.loads(base64.urlsafe_b64decode(body))
        except (ValueError, TypeError):
            return None
        if self._clock() >= int(expires_at):
            return None
        return OidcFlow(str(state), str(nonce), str(verifier), int(expires_at))

    # -- the flow ----------------------------------------------------------------------------------------

    async def authorization_url(self, flow: OidcFlow, redirect_uri: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": pkce_challenge(flow.verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def finish(self, flow: OidcFlow, code: str, redirect_uri: str) -> OidcSignIn:
        """Exchange the code and check the ID token; who signed in and whether they are an admin."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": flow.verifier,
            "client_id": self.settings.client_id,
        }
        secret = self.settings.client_secret
        auth = httpx.BasicAuth(self.settings.client_id, secret.get_secret_value()) if secret else None
        try:
            async with self._client(auth) as http:
                response = await http.post(metadata["token_endpoint"], data=form)
                tokens = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise OidcError(f"the identity provider could not be reached ({type(error).__name__})") from None
        if response.status_code != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
            raise OidcError("the identity provider refused the sign-in code")
        claims = await self._verified(str(tokens["id_token"]), metadata)
        if not hmac.compare_digest(str(claims.get("nonce", "")), flow.nonce):
            raise OidcError("the identity provider's answer is not for this sign-in (nonce)")
        subject = str(claims.get(self.settings.operator_claim, ""))
        if not subject:
            raise OidcError(f"the identity provider's answer has no {self.settings.operator_claim!r}")
        # The journal takes pseudonymous ids: anything else (an address, odd characters) is hashed.
        operator = (
            subject
            if OPERATOR_ID.match(subject) and "@" not in subject
            else "oidc-" + hashlib.sha256(subject.encode()).hexdigest()[:32]
        )
        admin = _granted(claims.get(self.settings.admin_claim), self.settings.admin_value)
        return OidcSignIn(operator, admin)

    async def _verified(self, id_token: str, metadata: dict[str, Any]) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("the identity provider's ID token is malformed") from None
        keys = (await self._get_json(metadata["jwks_uri"])).get("keys", [])
        matching = [k for k in keys if isinstance(k, dict) and k.get("kid") == header.get("kid")]
        if not matching:
            raise OidcError("the identity provider's ID token is signed by an unknown key")
        try:
            key = jwt.PyJWK(matching[0])
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=_ALGORITHMS,
                audience=self.settings.client_id,
                issuer=str(metadata["issuer"]),
                leeway=30,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise OidcError(f"the identity provider's ID token is not valid ({error})") from None
        return claims
