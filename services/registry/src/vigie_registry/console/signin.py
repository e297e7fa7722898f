"""Signing in to the console on a single-machine install: one-time links and the sessions they open.

A **sign-in link** is minted by whoever holds the registry's settings (``python -m vigie_registry
console-link``, or :func:`console_link` from the demo): ``/console/sign-in?token=JWT``, a JSON Web Token
(RFC 7519) signed with HS256, audience ``vigie-registry/console/sign-in-link``, whose claims are the operator
(``sub``), when it was minted and when it ends (``iat``, ``exp``: ``console.link_ttl_s``, 10 minutes) and a
random nonce (``jti``). Its key is derived from ``receipt_key``, so the process that mints it need not be the
one that serves it. It works once: the service remembers the nonces it has accepted until they would have
expired anyway.

A **session** is a cookie holding another JWT (HS256, audience ``vigie-registry/console/session``, its own
key): the operator (``sub``), ``iat``, ``exp``, the session's id (``jti``) and its scopes (``scope``, space
separated). Nothing is stored but the ids of sessions signed out before their end. Each form of the console
carries a token, an HMAC-SHA256 of the session's id by a key derived from the session key
(:meth:`ConsoleSessions.form_token`): a page of another site cannot know it, whatever the browser does with
the cookie.

The keys are derived with HKDF-SHA256 (RFC 5869), one ``info`` label each, so a link is never a session nor a
session a link: the signature fails before the audience is even read. Tokens are read with PyJWT (HS256 only,
every claim required); their times are checked against the service's clock, which tests can set, with 60 s of
slack for a minting machine's clock ahead of this one.

Nothing here imports FastAPI: the routes are in :mod:`vigie_registry.console.app`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vigie_registry.settings import RegistrySettings

__all__ = [
    "ConsoleSession",
    "ConsoleSessions",
    "SignInLinks",
    "SignInProblem",
    "SignInRefusedError",
    "console_keys",
    "console_link",
]

SIGN_IN_PATH = "/console/sign-in"
_LINK_AUDIENCE = "vigie-registry/console/sign-in-link"
_SESSION_AUDIENCE = "vigie-registry/console/session"
_LINK_KEY_INFO = b"vigie-registry console sign-in link key/2"
_SESSION_KEY_INFO = b"vigie-registry console session key/2"
_FORM_KEY_INFO = b"vigie-registry console form token key/2"
_ALGORITHMS = ["HS256"]
_LINK_CLAIMS = ["aud", "sub", "iat", "exp", "jti"]
_SESSION_CLAIMS = [*_LINK_CLAIMS, "scope"]
# A link or cookie is a few hundred characters; anything much longer is not decoded at all.
_MAX_TOKEN_CHARS = 2048
# A minting machine's clock may be this far ahead of the one that reads the token.
_CLOCK_SLACK_S = 60
# What an operator's id may be: a pseudonymous id the audit journal accepts as an actor (no e-mail address).
OPERATOR_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
_NONCE = re.compile(r"^[0-9a-f]{32}$")


class SignInProblem(StrEnum):
    MALFORMED = "malformed"
    # Not minted with this registry's key (or not as a sign-in link).
    FORGED = "forged"
    EXPIRED = "expired"
    USED = "used"


class SignInRefusedError(Exception):
    def __init__(self, problem: SignInProblem) -> None:
        super().__init__(f"sign-in link refused: {problem}")
        self.problem = problem


def _derived_key(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _claims(token: str, key: bytes, audience: str, required: list[str]) -> dict[str, Any]:
    """The claims of a JWT signed with ``key`` for ``audience``, all present and of the expected types; else
    :class:`SignInRefusedError` saying why. Times are left to the caller's clock."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise SignInRefusedError(SignInProblem.MALFORMED)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=_ALGORITHMS,
            audience=audience,
            # PyJWT reads the wall clock for exp and iat; the callers check the service's clock instead.
            options={"require": required, "strict_aud": True, "verify_exp": False, "verify_iat": False},
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidAudienceError):
        raise SignInRefusedError(SignInProblem.FORGED) from None
    except jwt.InvalidTokenError:
        raise SignInRefusedError(SignInProblem.MALFORMED) from None
    if not all(type(claims[time_claim]) is int for time_claim in ("iat", "exp")):
        raise SignInRefusedError(SignInProblem.MALFORMED)
    if not _NONCE.match(claims["jti"]) or not OPERATOR_ID.match(claims["sub"]):
        raise SignInRefusedError(SignInProblem.MALFORMED)
    return claims


@dataclass(frozen=True, slots=True)
class ConsoleKeys:
    link: bytes
    session: bytes


def console_keys(secret: bytes) -> ConsoleKeys:
    """The console's keys, derived from ``secret`` (the receipt key) with HKDF-SHA256: every process with the
    settings has them."""
    return ConsoleKeys(
        link=_derived_key(secret, _LINK_KEY_INFO), session=_derived_key(secret, _SESSION_KEY_INFO)
    )


class SignInLinks:
    """Mints and redeems one-time sign-in tokens."""

    def __init__(self, key: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("a sign-in key has at least 32 bytes")
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock
        # nonce -> when the token would have expired: a used token stays refused until then.
        self._used: dict[str, float] = {}

    def mint(self, operator: str) -> str:
        if not OPERATOR_ID.match(operator):
            raise ValueError(
                "an operator id: a pseudonym of 1 to 128 letters, digits or _.+- (no e-mail address)"
            )
        issued = int(self._clock())
        claims = {
            "aud": _LINK_AUDIENCE,
            "sub": operator,
            "iat": issued,
            "exp": issued + self._ttl_s,
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def redeem(self, token: str) -> str:
        """The operator the token signs in, once; else :class:`SignInRefusedError` saying why."""
        claims = _claims(token, self._key, _LINK_AUDIENCE, _LINK_CLAIMS)
        nonce, issued = claims["jti"], claims["iat"]
        # This service's link_ttl_s bounds the link too, whatever the minting process set.
        ends = min(claims["exp"], issued + self._ttl_s)
        now = self._clock()
        for old in [n for n, until in self._used.items() if until < now]:
            del self._used[old]
        if nonce in self._used:
            raise SignInRefusedError(SignInProblem.USED)
        if not issued - _CLOCK_SLACK_S <= now < ends:
            raise SignInRefusedError(SignInProblem.EXPIRED)
        self._used[nonce] = ends
        operator: str = claims["sub"]
        return operator


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    session_id: str
    operator: str
    scopes: frozenset[str]
    # Unix seconds.
    expires_at: int


class ConsoleSessions:
    """Signed session cookies, their forms' tokens, and sign-out."""

    def __init__(self, key: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("a session key has at least 32 bytes")
        self._key = key
        self._form_key = _derived_key(key, _FORM_KEY_INFO)
        self.ttl_s = ttl_s
        self._clock = clock
        # Sessions signed out before their end: session id -> its end.
        self._ended: dict[str, int] = {}

    def open(self, operator: str, scopes: Iterable[str]) -> tuple[ConsoleSession, str]:
        """A new session and its cookie's value."""
        issued = int(self._clock())
        session = ConsoleSession(secrets.token_hex(16), operator, frozenset(scopes), issued + self.ttl_s)
        claims = {
            "aud": _SESSION_AUDIENCE,
            "sub": operator,
            "iat": issued,
            "exp": session.expires_at,
            "jti": session.session_id,
            "scope": " ".join(sorted(session.scopes)),
        }
        return session, jwt.encode(claims, self._key, algorithm="HS256")

    def read(self, cookie: str | None) -> ConsoleSession | None:
        """The live session the cookie holds, or None (none, forged, expired or signed out)."""
        if not cookie:
            return None
        try:
            claims = _claims(cookie, self._key, _SESSION_AUDIENCE, _SESSION_CLAIMS)
        except SignInRefusedError:
            return None
        scopes, expires_at = claims["scope"], claims["exp"]
        now = self._clock()
        if not isinstance(scopes, str) or not claims["iat"] - _CLOCK_SLACK_S <= now < expires_at:
            return None
        if claims["jti"] in self._ended:
            return None
        return ConsoleSession(claims["jti"], claims["sub"], frozenset(scopes.split()), expires_at)

    def end(self, session: ConsoleSession) -> None:
        now = self._clock()
        for old in [s for s, until in self._ended.items() if until < now]:
            del self._ended[old]
        self._ended[session.session_id] = session.expires_at

    def form_token(self, session: ConsoleSession) -> str:
        return hmac.new(self._form_key, session.session_id.encode(), hashlib.sha256).hexdigest()

    def form_token_valid(self, session: ConsoleSession, token: str | None) -> bool:
        # Bytes: compare_digest refuses a str with characters beyond ASCII, which a posted form may hold.
        return token is not None and hmac.compare_digest(self.form_token(session).encode(), token.encode())


def _secret(settings: RegistrySettings) -> bytes:
    if settings.receipt_key is None:
        raise ValueError(
            "console sign-in links need receipt_key (VIGIE_REGISTRY_RECEIPT_KEY): the key they are signed "
            "with is derived from it, so that the service accepts the links another process mints"
        )
    return settings.receipt_key.get_secret_value().encode()


def console_link(
    settings: RegistrySettings,
    *,
    operator: str = "operator",
    base_url: str | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """A one-time address that signs ``operator`` in to the console with the admin scope, valid for
    ``console.link_ttl_s``. ``base_url``: where the registry is reached (e.g. ``http://127.0.0.1:8080``);
    default: ``public.base_url``, else the HTTP settings' host and port. Raises ValueError without
    ``receipt_key`` or without a known address."""
    base = base_url or settings.public.base_url
    if base is None:
        if not settings.http.port:
            raise ValueError("say where the registry is reached: base_url, public.base_url or http.port")
        base = f"http://{settings.http.host}:{settings.http.port}"
    links = SignInLinks(console_keys(_secret(settings)).link, settings.console.link_ttl_s, clock)
    return f"{base.rstrip('/')}{SIGN_IN_PATH}?token={links.mint(operator)}"
