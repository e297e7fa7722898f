"""Signed tree heads: the journal's commitment to its first ``tree_size`` entries, signed with Ed25519.

The signed bytes are a short text, so that anyone can check a head with standard tools
(``openssl pkeyutl -verify -rawin``) without this code::

    vigie-audit-tree-head/v1
    <log id>
    <tree size>
    <root hash, lowercase hex>
    <timestamp, milliseconds since the Unix epoch>

each line ending with a newline. Whoever holds a signed head and the journal's public key can then check
any inclusion or consistency proof against it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vigie_audit.merkle import HASH_SIZE

_FORMAT = "vigie-audit-tree-head/v1"
_LOG_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_T = TypeVar("_T")


class TreeHeadError(ValueError):
    """A tree head, key or signature that cannot be used, with the reason."""


def key_id(public_key: bytes) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TreeHead:
    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int

    def __post_init__(self) -> None:
        if not _LOG_ID.fullmatch(self.log_id):
            raise TreeHeadError(f"log id {self.log_id!r} must be 1 to 128 letters, digits or ._:/-")
        if self.tree_size < 0:
            raise TreeHeadError(f"tree size {self.tree_size} is negative")
        if len(self.root_hash) != HASH_SIZE:
            raise TreeHeadError(f"root hash is {len(self.root_hash)} bytes, not {HASH_SIZE}")
        if self.timestamp_ms < 0:
            raise TreeHeadError(f"timestamp {self.timestamp_ms} is negative")

    def signed_message(self) -> bytes:
        return (
            f"{_FORMAT}\n{self.log_id}\n{self.tree_size}\n{self.root_hash.hex()}\n{self.timestamp_ms}\n"
        ).encode()


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    head: TreeHead
    signature: bytes
    # The key that signed it, so heads signed before a key rotation stay checkable; trust comes from a
    # key the verifier pins, never from this field alone.
    public_key: bytes

    def verify(self, trusted_key: bytes | None = None) -> None:
        """Raise :class:`TreeHeadError` unless the signature is valid (and by ``trusted_key`` if given)."""
        if trusted_key is not None and trusted_key != self.public_key:
            raise TreeHeadError(
                f"signed by key {key_id(self.public_key)}, not by the trusted key {key_id(trusted_key)}"
            )
        if len(self.signature) != SIGNATURE_SIZE:
            raise TreeHeadError(f"signature is {len(self.signature)} bytes, not {SIGNATURE_SIZE}")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                self.signature, self.head.signed_message()
            )
        except (InvalidSignature, ValueError) as error:
            raise TreeHeadError(
                f"the signature of the tree head of size {self.head.tree_size} is not valid"
            ) from error

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.head.log_id,
            "tree_size": self.head.tree_size,
            "root_hash": self.head.root_hash.hex(),
            "timestamp_ms": self.head.timestamp_ms,
            "signature": base64.b64encode(self.signature).decode(),
            "public_key": base64.b64encode(self.public_key).decode(),
            "key_id": key_id(self.public_key),
        }

    @classmethod
    def from_json(cls, data: object) -> SignedTreeHead:
        """Parse :meth:`to_json`'s output, naming the field at fault."""
        if not isinstance(data, dict):
            raise TreeHeadError("a signed tree head is a JSON object")
        head = TreeHead(
            log_id=_field(data, "log_id", str),
            tree_size=_field(data, "tree_size", int),
            root_hash=_hex_field(data, "root_hash"),
            timestamp_ms=_field(data, "timestamp_ms", int),
        )
        return cls(head, _base64_field(data, "signature"), _base64_field(data, "public_key"))


def _field(data: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TreeHeadError(f"{name}: expected a {kind.__name__}, got {value!r}")
    return value


def _hex_field(data: dict[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(_field(data, name, str))
    except ValueError as error:
        raise TreeHeadError(f"{name}: not hexadecimal") from error


def _base64_field(data: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_field(data, name, str), validate=True)
    except binascii.Error as error:
        raise TreeHeadError(f"{name}: not base64") from error


class TreeHeadSigningKey:
    """The journal's Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> TreeHeadSigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, text: str) -> TreeHeadSigningKey:
        """A PEM (PKCS#8) Ed25519 private key, or the base64 of its 32 raw bytes."""
        text = text.strip()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            except (ValueError, TypeError) as error:
                raise TreeHeadError(f"the signing key is not a readable PEM private key: {error}") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise TreeHeadError("the signing key must be an Ed25519 key")
            return cls(key)
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise TreeHeadError("the signing key is neither PEM nor base64") from None
        if len(raw) != 32:
            raise TreeHeadError(f"a raw Ed25519 private key is 32 bytes, the base64 gives {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def public_key_pem(self) -> str:
        return public_key_pem(self.public_key)

    def sign(self, head: TreeHead) -> SignedTreeHead:
        return SignedTreeHead(head, self._private_key.sign(head.signed_message()), self.public_key)


def public_key_pem(public_key: bytes) -> str:
    return (
        Ed25519PublicKey.from_public_bytes(public_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_public_key(text: str) -> bytes:
    """A public key as PEM (SubjectPublicKeyInfo) or the base64 of its 32 raw bytes: its raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as error:
            raise TreeHeadError(f"not a readable PEM public key: {error}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise TreeHeadError("the public key must be an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise TreeHeadError("the public key is neither PEM nor base64") from None
    if len(raw) != PUBLIC_KEY_SIZE:
        raise TreeHeadError(f"a raw Ed25519 public key is 32 bytes, the base64 gives {len(raw)}")
    return raw
