"""The object button's form token: forgery protection without a cookie, a session or any stored state.

A token is issued with the camera's page and says: this form, for this camera, was served at this time to
this client. It is ``ISSUED.NONCE.MAC``, the MAC an HMAC-SHA256 over the format, the camera id, the
issue time, the nonce and the client's address, by a key shared by the registry's replicas (derived from
``receipt_key``). Nothing identifies the person: the address is inside the MAC only (keyed, not
recoverable), the token goes back to the client that already has that address, and nothing is stored.

Why bind the address: the threat of a forged objection is not a victim's account (there is none) but a
third-party site making its visitors' browsers object, each from its own address, so that the per-client
rate limit no longer bounds the pauses. Such a site can fetch a token from its server, but that token is
bound to the server's address and is refused from the visitors'. The page also refuses posts that the
browser says come from another site (``Sec-Fetch-Site``, ``Origin``): see
:func:`vigie_registry.objections.cross_site`.

A client whose address changes between loading the page and pressing the button (Wi-Fi to mobile data)
is shown the page again with a fresh form: one more press.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["FormTokenProblem", "FormTokens"]

_FORMAT = b"vigie-objection-form/1"


class FormTokenProblem(StrEnum):
    MALFORMED = "malformed"
    EXPIRED = "expired"
    # Another camera's form, another client's, or not the registry's.
    FORGED = "forged"


class FormTokens:
    def __init__(self, key: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("a form token key has at least 32 bytes")
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def derived_from(cls, secret: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> FormTokens:
        """Tokens whose key is derived from ``secret`` (the receipt key): every replica accepts them."""
        return cls(hmac.new(secret, b"vigie form token key", hashlib.sha256).digest(), ttl_s, clock)

    def _mac(self, camera_id: str, issued: int, nonce: str, client: str) -> str:
        message = b"|".join(
            (_FORMAT, camera_id.encode(), str(issued).encode(), nonce.encode(), client.encode())
        )
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, camera_id: str, client: str) -> str:
        issued = int(self._clock())
        nonce = secrets.token_hex(8)
        return f"{issued}.{nonce}.{self._mac(camera_id, issued, nonce, client)}"

    def check(self, token: str, camera_id: str, client: str) -> FormTokenProblem | None:
        """None when ``token`` is a live form of this camera served to this client; else the problem."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
            return FormTokenProblem.MALFORMED
        issued_text, nonce, mac = parts
        if len(nonce) != 16 or len(mac) != 64 or not all(c in "0123456789abcdef" for c in nonce + mac):
            return FormTokenProblem.MALFORMED
        issued = int(issued_text)
        expected = self._mac(camera_id, issued, nonce, client)
        if not hmac.compare_digest(expected, mac):
            return FormTokenProblem.FORGED
        now = self._clock()
        # A little slack for clocks of replicas that differ.
        if not issued - 60 <= now <= issued + self._ttl_s:
            return FormTokenProblem.EXPIRED
        return None
