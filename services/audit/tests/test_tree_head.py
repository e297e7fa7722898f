import base64
import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigie_audit.tree_head import (
    SignedTreeHead,
    TreeHead,
    TreeHeadError,
    TreeHeadSigningKey,
    load_public_key,
    public_key_pem,
)

ROOT = bytes(range(32))


def test_the_signed_bytes_are_a_readable_text() -> None:
    head = TreeHead("vigie-lyon", 42, ROOT, 1_770_000_000_000)
    assert head.signed_message() == (
        b"vigie-audit-tree-head/v1\nvigie-lyon\n42\n" + ROOT.hex().encode() + b"\n1770000000000\n"
    )


def test_a_signed_head_verifies_and_any_change_breaks_it() -> None:
    key = TreeHeadSigningKey.generate()
    signed = key.sign(TreeHead("vigie", 7, ROOT, 123))
    signed.verify()
    signed.verify(key.public_key)
    for changed in (
        dataclasses.replace(signed.head, tree_size=8),
        dataclasses.replace(signed.head, root_hash=bytes(32)),
        dataclasses.replace(signed.head, timestamp_ms=124),
        dataclasses.replace(signed.head, log_id="other"),
    ):
        with pytest.raises(TreeHeadError, match="not valid"):
            SignedTreeHead(changed, signed.signature, signed.public_key).verify()
    with pytest.raises(TreeHeadError, match="not by the trusted key"):
        signed.verify(TreeHeadSigningKey.generate().public_key)
    assert SignedTreeHead.from_json(signed.to_json()) == signed


def test_keys_load_from_pem_or_raw_base64() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    from_pem, from_raw = TreeHeadSigningKey.load(pem), TreeHeadSigningKey.load(base64.b64encode(raw).decode())
    assert from_pem.public_key == from_raw.public_key
    assert load_public_key(public_key_pem(from_pem.public_key)) == from_pem.public_key
    assert load_public_key(base64.b64encode(from_pem.public_key).decode()) == from_pem.public_key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "neither PEM nor base64"),
        (base64.b64encode(b"short").decode(), "32 bytes"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a readable PEM"),
    ],
)
def test_unusable_keys_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(TreeHeadError, match=message):
        TreeHeadSigningKey.load(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tree_size", "7"), ("root_hash", "zz"), ("signature", "!!"), ("log_id", 3), ("timestamp_ms", None)],
)
def test_a_malformed_saved_head_names_its_field(field: str, value: object) -> None:
    document = TreeHeadSigningKey.generate().sign(TreeHead("vigie", 7, ROOT, 1)).to_json()
    document[field] = value
    with pytest.raises(TreeHeadError, match=field):
        SignedTreeHead.from_json(document)
