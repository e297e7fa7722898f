"""The registry's tables (SQLAlchemy Core). The migrations in ``vigie_registry/migrations`` create them;
this module describes them for queries. Times are Unix seconds (UTC) in BIGINT columns.

- ``policy_sequence``: one row, the registry-wide sequence every change of a camera takes its policy
  version from (so a version never goes back, even for a camera deleted and declared again).
- ``cameras``: one row per camera. The declaration is JSON (``CameraDeclaration``) without the source;
  the source URL, a secret, is in ``source_secret`` (encrypted when a key is configured) and its redacted
  form in ``source_display``. ``version`` is the policy version of the last change, ``published_version``
  the last one written to the policy bucket: a camera with ``published_version < version`` is published
  again by the reconciler. ``view_request_*``: the camera's current request for a scene view (none: all
  three NULL), republished in its policy until replaced.
- ``policy_tombstones``: cameras deleted from the table whose key must still be deleted from the bucket.
- ``objections``: one row per honoured objection: a random receipt id, the camera, when, until when. No
  address, no identifier of the person.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

ID = String(64)

policy_sequence = Table(
    "policy_sequence",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

cameras = Table(
    "cameras",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("purpose", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", String(64), nullable=False),
    Column("declaration", Text, nullable=False),
    Column("source_secret", Text, nullable=False),
    Column("source_display", Text, nullable=False),
    Column("source_has_credentials", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("published_version", BigInteger, nullable=False),
    Column("paused_until", BigInteger),
    # security_events only: when the authorisation ends (what the expiry job looks for).
    Column("authorised_until", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("view_request_id", String(36)),
    Column("view_requested_at", BigInteger),
    Column("view_sample_seconds", Integer),
)
Index("ix_cameras_authorised_until", cameras.c.status, cameras.c.authorised_until)

policy_tombstones = Table(
    "policy_tombstones",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

objections = Table(
    "objections",
    metadata,
    Column("receipt_id", String(32), primary_key=True),
    Column("camera_id", ID, nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    Column("paused_until", BigInteger, nullable=False),
    Column("extended", Boolean, nullable=False),
)
Index("ix_objections_camera", objections.c.camera_id, objections.c.recorded_at)
Index("ix_objections_recorded_at", objections.c.recorded_at)
