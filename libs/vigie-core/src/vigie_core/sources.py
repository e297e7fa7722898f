"""What the registry and ingest share about camera sources (``vigie.v1.CameraSource`` in the bucket
``vigie-sources``, which the registry writes and only ingest may read): the format's version and the key
that seals the URLs (the registry's ``source_key``, a Fernet key, which ingest holds too)."""

from __future__ import annotations

from cryptography.fernet import Fernet
from pydantic import SecretStr

__all__ = ["SOURCE_SCHEMA_VERSION", "check_fernet_key"]

# The CameraSource.schema_version the registry writes and ingest reads; ingest refuses any other (a newer
# registry may have added a field that changes how the camera must be read).
SOURCE_SCHEMA_VERSION = 1


def check_fernet_key(value: SecretStr | None, what: str) -> SecretStr | None:
    """For a settings validator: ``value`` is a Fernet key, or absent. The error names ``what`` (the field
    and how to get a key) and never echoes the value."""
    if value is not None:
        try:
            Fernet(value.get_secret_value().encode())
        except ValueError:
            raise ValueError(f"{what}: not a Fernet key") from None
    return value
