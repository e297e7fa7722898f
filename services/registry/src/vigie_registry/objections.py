"""The right to object without identifying anyone (docs/privacy.md rules 15, 16): receipts and abuse limits.

**Receipt.** An objection gets a random receipt id and an HMAC-SHA256 signature, by the registry's
receipt key, over the receipt id, the camera, when it was recorded and until when the camera is paused.
Whoever holds the receipt can show it was recorded (``POST /v1/public/receipts/verify``, and the
``objection_honoured`` event of the audit journal carries the receipt id); nothing in it or in the
registry says who objected.

**Abuse limits.** Per client, a moving-window rate limit (the ``limits`` library, in memory). The client
is its address (the TCP peer; behind proxies the operator trusts, the address they saw:
:func:`client_address`), used only as a key of that in-memory limiter and only as a keyed hash (a random
key drawn at start): it is never stored, logged, audited or counted in a metric. A camera's pause is
extended, never stacked, and never longer than the maximum pause; the metrics
``vigie_registry_objections_total`` and ``vigie_registry_objections_rate_limited_total`` feed an alert.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

__all__ = [
    "ClientRateLimiter",
    "RateDecision",
    "Receipt",
    "ReceiptSigner",
    "client_address",
    "cross_site",
    "new_receipt_id",
]

_RECEIPT_FORMAT = "vigie-objection-receipt/1"


def new_receipt_id() -> str:
    """128 random bits, hexadecimal: unguessable, and about no one."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    camera_id: str
    recorded_at: int
    paused_until: int
    signature: str


class ReceiptSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a receipt key has at least 32 bytes")
        self._key = key

    @classmethod
    def generate(cls) -> ReceiptSigner:
        return cls(secrets.token_bytes(32))

    def _mac(self, receipt_id: str, camera_id: str, recorded_at: int, paused_until: int) -> str:
        message = f"{_RECEIPT_FORMAT}|{receipt_id}|{camera_id}|{recorded_at}|{paused_until}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, receipt_id: str, camera_id: str, recorded_at: int, paused_until: int) -> Receipt:
        return Receipt(
            receipt_id,
            camera_id,
            recorded_at,
            paused_until,
            self._mac(receipt_id, camera_id, recorded_at, paused_until),
        )

    def verify(self, receipt: Receipt) -> bool:
        expected = self._mac(receipt.receipt_id, receipt.camera_id, receipt.recorded_at, receipt.paused_until)
        # Bytes: compare_digest refuses non-ASCII strings, and a forged signature may hold anything.
        return hmac.compare_digest(expected.encode(), receipt.signature.encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: int = 0


class ClientRateLimiter:
    """A per-client moving-window limit; the client's address never leaves this object, and only hashed."""

    def __init__(self, limits: str) -> None:
        self._items: list[RateLimitItem] = parse_many(limits)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._salt = secrets.token_bytes(32)

    def _key(self, address: str) -> str:
        return hmac.new(self._salt, address.encode(), hashlib.sha256).hexdigest()

    def hit(self, address: str) -> RateDecision:
        key = self._key(address)
        for item in self._items:
            if not self._limiter.test(item, "objection", key):
                reset = self._limiter.get_window_stats(item, "objection", key).reset_time
                return RateDecision(False, max(1, int(reset - time.time()) + 1))
        for item in self._items:
            self._limiter.hit(item, "objection", key)
        return RateDecision(True)


Network = IPv4Network | IPv6Network


def _within(address: str | None, networks: Sequence[Network]) -> bool:
    if address is None or not networks:
        return False
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, *, hops: int, trusted: Sequence[Network]
) -> str:
    """The client's address: the TCP peer, unless the peer is one of the ``trusted`` proxies.

    Only then is X-Forwarded-For read: from the right, over the ``hops`` entries the proxies appended,
    the first address that is not itself a trusted proxy (or, if all are, the outermost one). Anyone can
    send the header: believed from anyone, it would let one client pass for as many as it likes.
    """
    client = peer or "unknown"
    if hops <= 0 or not forwarded_for or not _within(peer, trusted):
        return client
    appended = [part.strip() for part in forwarded_for.split(",") if part.strip()][-hops:]
    for address in reversed(appended):
        if not _within(address, trusted):
            return address
    return appended[0] if appended else client


def cross_site(sec_fetch_site: str | None, origin: str | None, hosts: Iterable[str]) -> bool:
    """Whether the browser says this post comes from another site than the page's ``hosts``.

    A third-party page making its visitors' browsers object would spread objections over their addresses
    and so around the per-client limit: both the page's button and the JSON endpoint refuse it.
    Fetch metadata first (every current browser sends it); then the Origin header, compared by host and
    port only, since TLS usually ends at the ingress. A client sending neither (an old browser, a script)
    is let through: the form token, bound to its address, still applies.
    """
    if sec_fetch_site is not None:
        return sec_fetch_site.strip().lower() != "same-origin"
    if origin is None:
        return False
    if origin.strip().lower() == "null":
        return True
    netloc = urlsplit(origin.strip()).netloc.lower()
    return netloc not in {h.lower() for h in hosts}
