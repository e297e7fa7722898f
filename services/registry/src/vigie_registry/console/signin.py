"""Signing in to the console on a single-machine install: one-time links and the sessions they open.

A **sign-in link** is minted by whoever holds the registry's settings (``python -m vigie_registry
console-link``, or :func:`console_link` from the demo): ``/console/sign-in?token=ISSUED.NONCE.SUBJECT.MAC``,
the MAC an HMAC-SHA256 by a key derived from ``receipt_key``, so the process that mints it need not be the
one that serves it. It works for ``console.link_ttl_s`` (10 minutes) and once: the service remembers the
nonces it has accepted until they would have expired anyway.

A **session** is a signed cookie ``SID.EXPIRES.SUBJECT.SCOPES.MAC`` (nothing stored but the ids of sessions
signed out before their end). Each form of the console carries a token derived from the session's id
(:meth:`ConsoleSessions.form_token`): a page of another site cannot know it, whatever the browser does with
the cookie.

Nothing here imports FastAPI: the routes are in :mod:`vigie_registry.console.app`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

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
_LINK_FORMAT = b"vigie-console-link/1"
_SESSION_FORMAT = b"vigie-console-session/1"
_FORM_FORMAT = b"vigie-console-form/1"
# What an operator's id may be: a pseudonymous id the audit journal accepts as an actor (no e-mail address).
OPERATOR_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_MAC = re.compile(r"^[0-9a-f]{64}$")


class SignInProblem(StrEnum):
    MALFORMED = "malformed"
    # Not minted with this registry's key.
    FORGED = "forged"
    EXPIRED = "expired"
    USED = "used"


class SignInRefusedError(Exception):
    def __init__(self, problem: SignInProblem) -> None:
        super().__init__(f"sign-in link refused: {problem}")
        self.problem = problem


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not base64url") from None


def _mac(key: bytes, *parts: bytes) -> str:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleKeys:
    link: bytes
    session: bytes


def console_keys(secret: bytes) -> ConsoleKeys:
    """The console's keys, derived from ``secret`` (the receipt key): every process with the settings has
    them."""
    return ConsoleKeys(
        link=hmac.new(secret, b"vigie console sign-in link key", hashlib.sha256).digest(),
        session=hmac.new(secret, b"vigie console session key", hashlib.sha256).digest(),
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
        issued = str(int(self._clock()))
        nonce = secrets.token_hex(16)
        subject = _b64(operator)
        mac = _mac(self._key, _LINK_FORMAT, issued.encode(), nonce.encode(), subject.encode())
        return f"{issued}.{nonce}.{subject}.{mac}"

    def redeem(self, token: str) -> str:
        """The operator the token signs in, once; else :class:`SignInRefusedError` saying why."""
        parts = token.split(".")
        if len(parts) != 4 or not parts[0].isdigit() or len(parts[0]) > 12:
            raise SignInRefusedError(SignInProblem.MALFORMED)
        issued_text, nonce, subject, mac = parts
        if not _NONCE.match(nonce) or not _MAC.match(mac) or len(subject) > 200:
            raise SignInRefusedError(SignInProblem.MALFORMED)
        expected = _mac(self._key, _LINK_FORMAT, issued_text.encode(), nonce.encode(), subject.encode())
        if not hmac.compare_digest(expected, mac):
            raise SignInRefusedError(SignInProblem.FORGED)
        now = self._clock()
        for old in [n for n, until in self._used.items() if until < now]:
            del self._used[old]
        if nonce in self._used:
            raise SignInRefusedError(SignInProblem.USED)
        issued = int(issued_text)
        # A little slack for a minting machine's clock ahead of this one.
        if not issued - 60 <= now <= issued + self._ttl_s:
            raise SignInRefusedError(SignInProblem.EXPIRED)
        self._used[nonce] = issued + self._ttl_s + 60
        try:
            operator = _unb64(subject)
        except ValueError:
            raise SignInRefusedError(SignInProblem.MALFORMED) from None
        if not OPERATOR_ID.match(operator):
            raise SignInRefusedError(SignInProblem.MALFORMED)
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
        self.ttl_s = ttl_s
        self._clock = clock
        # Sessions signed out before their end: session id -> its end.
        self._ended: dict[str, int] = {}

    def _sign(self, *parts: str) -> str:
        return _mac(self._key, _SESSION_FORMAT, *(p.encode() for p in parts))

    def open(self, operator: str, scopes: Iterable[str]) -> tuple[ConsoleSession, str]:
        """A new session and its cookie's value."""
        session = ConsoleSession(
            secrets.token_hex(16), operator, frozenset(scopes), int(self._clock()) + self.ttl_s
        )
        fields = (
            session.session_id,
            str(session.expires_at),
            _b64(operator),
            _b64(" ".join(sorted(session.scopes))),
        )
        return session, ".".join((*fields, self._sign(*fields)))

    def read(self, cookie: str | None) -> ConsoleSession | None:
        """The live session the cookie holds, or None (none, forged, expired or signed out)."""
        if not cookie or len(cookie) > 1024:
            return None
        parts = cookie.split(".")
        if len(parts) != 5:
            return None
        session_id, expires_text, subject, scopes, mac = parts
        if not _NONCE.match(session_id) or not expires_text.isdigit() or not _MAC.match(mac):
            return None
        if not hmac.compare_digest(self._sign(session_id, expires_text, subject, scopes), mac):
            return None
        expires_at = int(expires_text)
        if self._clock() >= expires_at or session_id in self._ended:
            return None
        try:
            operator, scope_text = _unb64(subject), _unb64(scopes)
        except ValueError:
            return None
        return ConsoleSession(session_id, operator, frozenset(scope_text.split()), expires_at)

    def end(self, session: ConsoleSession) -> None:
        now = self._clock()
        for old in [s for s, until in self._ended.items() if until < now]:
            del self._ended[old]
        self._ended[session.session_id] = session.expires_at

    def form_token(self, session: ConsoleSession) -> str:
        return _mac(self._key, _FORM_FORMAT, session.session_id.encode())

    def form_token_valid(self, session: ConsoleSession, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.form_token(session), token)


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
