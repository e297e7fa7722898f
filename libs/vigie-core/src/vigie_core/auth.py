"""OAuth2 bearer tokens (JWT, RFC 6750 / RFC 9068) for every Vigie HTTP API.

In production the city's identity provider signs the tokens and publishes its keys as a JWKS
(``auth.jwks_url``); the embedded default and the tests sign them with a local Ed25519 key
(``auth.local_key``, or one generated at start-up when neither is configured). A service builds one
:class:`TokenVerifier` at start-up, installs it on its FastAPI app, and protects routes with
:func:`require_scopes`::

    install_authentication(runtime.app, TokenVerifier.from_settings(settings.auth))

    @router.get("/entries")
    def entries(principal: Annotated[Principal, Depends(require_scopes("audit:read"))]) -> ...:
        ...  # principal.subject is the pseudonymous operator id to audit

No token, or an invalid one, gives 401; a valid token without a required scope gives 403 (both with
the ``WWW-Authenticate`` header RFC 6750 describes).

``python -m vigie_core.auth keygen`` prints a new local key; ``python -m vigie_core.auth mint`` signs a
token with it (for the embedded default; production tokens come from the identity provider).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "AuthSettings",
    "AuthUnavailableError",
    "InvalidTokenError",
    "LocalTokenIssuer",
    "Principal",
    "TokenVerifier",
    "install_authentication",
    "require_authorization",
    "require_scopes",
]

logger = logging.getLogger("vigie.auth")

# Asymmetric algorithms only: a shared-secret (HS*) token could be forged by anyone who can verify one.
_ASYMMETRIC = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_STATE_KEY = "vigie_token_verifier"


class AuthSettings(BaseModel):
    """The ``auth`` section of a service's settings (env ``<PREFIX>AUTH__JWKS_URL`` and the like)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field("vigie-embedded", min_length=1, description="expected 'iss' claim")
    audience: str = Field("vigie", min_length=1, description="expected 'aud' claim")
    jwks_url: str | None = Field(None, description="the identity provider's JWKS (production)")
    local_key: SecretStr | None = Field(
        None, description="Ed25519 private key (PEM or base64 raw) that signs and checks local tokens"
    )
    algorithms: tuple[str, ...] = Field(("EdDSA", "ES256", "RS256", "PS256"), min_length=1)
    leeway_s: float = Field(30.0, ge=0, le=300, description="clock skew tolerated on exp/nbf/iat")
    jwks_cache_s: int = Field(300, ge=0, description="how long fetched keys are reused")
    jwks_timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        if self.jwks_url and self.local_key:
            raise ValueError("set either jwks_url (production) or local_key (embedded), not both")
        unsafe = sorted(set(self.algorithms) - _ASYMMETRIC)
        if unsafe:
            raise ValueError(
                f"algorithms {unsafe} are not allowed: only asymmetric ones ({sorted(_ASYMMETRIC)})"
            )
        return self


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the token's subject (a pseudonymous operator id) and what it may do."""

    subject: str
    scopes: frozenset[str]
    issuer: str
    expires_at: datetime
    token_id: str | None = None


class InvalidTokenError(Exception):
    """The token is missing a claim, expired, for another audience, badly signed...: answer 401."""


class AuthUnavailableError(Exception):
    """The identity provider's keys cannot be fetched: not the caller's fault, answer 503."""


def _key_thumbprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_ed25519_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or the base64 of its 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the key must be an Ed25519 private key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("the key is neither PEM nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"a raw Ed25519 private key is 32 bytes, the base64 gives {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


class LocalTokenIssuer:
    """Signs tokens with a local Ed25519 key: the embedded default's identity provider, and the tests'."""

    def __init__(self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.issuer = issuer
        self.audience = audience
        self.key_id = _key_thumbprint(self.public_key)

    @classmethod
    def generate(cls, *, issuer: str = "vigie-embedded", audience: str = "vigie") -> LocalTokenIssuer:
        return cls(Ed25519PrivateKey.generate(), issuer=issuer, audience=audience)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> LocalTokenIssuer:
        if settings.local_key is None:
            raise ValueError("auth.local_key is not set")
        try:
            key = load_ed25519_private_key(settings.local_key.get_secret_value())
        except ValueError as error:
            raise ValueError(f"auth.local_key: {error}") from None
        return cls(key, issuer=settings.issuer, audience=settings.audience)

    def mint(
        self,
        subject: str,
        scopes: Iterable[str],
        *,
        ttl_s: float = 900.0,
        now: float | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token for ``subject`` (a pseudonymous operator id) with ``scopes``."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "scope": " ".join(sorted(set(scopes))),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl_s),
            "jti": str(uuid.uuid4()),
            **(extra_claims or {}),
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK set, as an identity provider would publish it."""
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.key_id, "alg": "EdDSA", "use": "sig"}
            ]
        }


class TokenVerifier:
    """Checks bearer tokens: signature (JWKS or local key), issuer, audience, expiry, subject."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        local_issuer: LocalTokenIssuer | None = None,
        jwks_client: jwt.PyJWKClient | None = None,
    ) -> None:
        if (local_issuer is None) == (jwks_client is None):
            raise ValueError("a TokenVerifier needs exactly one of a local issuer and a JWKS client")
        self._settings = settings
        self._jwks_client = jwks_client
        # Exposed so the embedded default and tests can mint tokens this verifier accepts.
        self.local_issuer = local_issuer
        self._algorithms = ["EdDSA"] if local_issuer is not None else list(settings.algorithms)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenVerifier:
        if settings.jwks_url:
            client = jwt.PyJWKClient(
                settings.jwks_url,
                cache_keys=True,
                lifespan=max(settings.jwks_cache_s, 1),
                timeout=int(max(1, settings.jwks_timeout_s)),
            )
            return cls(settings, jwks_client=client)
        if settings.local_key is not None:
            return cls(settings, local_issuer=LocalTokenIssuer.from_settings(settings))
        issuer = LocalTokenIssuer.generate(issuer=settings.issuer, audience=settings.audience)
        logger.warning(
            "no auth.jwks_url nor auth.local_key: generated a local token key for this run (key id %s); "
            "tokens can only be minted in this process. Set auth.local_key "
            "(python -m vigie_core.auth keygen) or auth.jwks_url",
            issuer.key_id,
        )
        return cls(settings, local_issuer=issuer)

    def _signing_key(self, token: str) -> Any:
        if self.local_issuer is not None:
            return self.local_issuer.public_key
        assert self._jwks_client is not None
        try:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            raise AuthUnavailableError(f"cannot fetch the identity provider's keys: {error}") from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as error:
            raise InvalidTokenError(f"no key of the identity provider matches the token: {error}") from None

    def verify(self, token: str) -> Principal:
        """The token's principal; raises :class:`InvalidTokenError` (401) or :class:`AuthUnavailableError`."""
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=self._algorithms,
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError(f"the token is not for audience {self._settings.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError(f"the token is not from issuer {self._settings.issuer!r}") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidTokenError(f"the token has no {error.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidTokenError(f"the token's algorithm is not one of {self._algorithms}") from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("the token's signature is not valid") from None
        except jwt.InvalidTokenError as error:
            raise InvalidTokenError(f"the token is not valid: {error}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidTokenError("the token's subject is empty")
        return Principal(
            subject=subject,
            scopes=_scopes(claims),
            issuer=str(claims["iss"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims["jti"]) if "jti" in claims else None,
        )


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    # RFC 9068 says "scope" (space-separated); some providers send "scp", as a list or a string.
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)


def install_authentication(app: FastAPI, verifier: TokenVerifier) -> None:
    """Make ``verifier`` the one :func:`require_scopes` uses for this app's routes."""
    setattr(app.state, _STATE_KEY, verifier)


_bearer = HTTPBearer(auto_error=False, description="OAuth2 access token (JWT)")


def require_scopes(*scopes: str) -> Callable[..., Principal]:
    """A FastAPI dependency: the verified :class:`Principal`, which must hold every one of ``scopes``."""
    required = frozenset(scopes)

    def lacking(granted: frozenset[str]) -> str | None:
        missing = required - granted
        return f"the token lacks the scope(s): {', '.join(sorted(missing))}" if missing else None

    return require_authorization(lacking, " ".join(sorted(required)))


def require_authorization(
    lacking: Callable[[frozenset[str]], str | None], challenge_scope: str
) -> Callable[..., Principal]:
    """A FastAPI dependency: the verified :class:`Principal`, refused with 403 when ``lacking(scopes)``
    says what its scopes lack (e.g. one of several scopes is enough); ``challenge_scope`` is the scope
    named in the ``WWW-Authenticate`` header."""

    # A plain function: FastAPI runs it in its thread pool, where a JWKS fetch may block.
    def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        verifier = getattr(request.app.state, _STATE_KEY, None)
        if not isinstance(verifier, TokenVerifier):
            raise RuntimeError("call install_authentication(app, verifier) before serving protected routes")
        if credentials is None:
            raise HTTPException(
                401,
                "a bearer token is needed (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="vigie"'},
            )
        try:
            principal = verifier.verify(credentials.credentials)
        except InvalidTokenError as error:
            description = str(error).replace('"', "'")
            challenge = f'Bearer realm="vigie", error="invalid_token", error_description="{description}"'
            raise HTTPException(401, str(error), headers={"WWW-Authenticate": challenge}) from None
        except AuthUnavailableError as error:
            logger.error("%s", error)
            raise HTTPException(503, "the identity provider's keys are unavailable") from None
        refusal = lacking(principal.scopes)
        if refusal:
            raise HTTPException(
                403,
                refusal,
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="vigie", error="insufficient_scope", scope="{challenge_scope}"'
                    )
                },
            )
        return principal

    return authenticated


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_core.auth", description="local tokens for the embedded default"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("keygen", help="print a new Ed25519 private key (base64) for auth.local_key")
    mint = commands.add_parser("mint", help="print a token signed with the local key")
    mint.add_argument("--key-file", type=Path, required=True, help="file holding auth.local_key")
    mint.add_argument("--subject", required=True, help="pseudonymous operator id")
    mint.add_argument("--scope", action="append", default=[], help="repeat for several scopes")
    mint.add_argument("--issuer", default="vigie-embedded")
    mint.add_argument("--audience", default="vigie")
    mint.add_argument("--ttl-s", type=float, default=900.0)
    args = parser.parse_args(argv)
    if args.command == "keygen":
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        print(base64.b64encode(raw).decode())
        return 0
    settings = AuthSettings(
        issuer=args.issuer, audience=args.audience, local_key=SecretStr(args.key_file.read_text())
    )
    print(LocalTokenIssuer.from_settings(settings).mint(args.subject, args.scope, ttl_s=args.ttl_s))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
