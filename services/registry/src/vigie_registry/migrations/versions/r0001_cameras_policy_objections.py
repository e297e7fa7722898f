"""Cameras, the policy sequence, policy tombstones and objections.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "policy_sequence",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        sa.table("policy_sequence", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "policy", "value": 0}],
    )
    op.create_table(
        "cameras",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("purpose", _ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(64), nullable=False),
        sa.Column("declaration", sa.Text, nullable=False),
        sa.Column("source_secret", sa.Text, nullable=False),
        sa.Column("source_display", sa.Text, nullable=False),
        sa.Column("source_has_credentials", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("published_version", sa.BigInteger, nullable=False),
        sa.Column("paused_until", sa.BigInteger),
        sa.Column("authorised_until", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cameras_authorised_until", "cameras", ["status", "authorised_until"])
    op.create_table(
        "policy_tombstones",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "objections",
        sa.Column("receipt_id", sa.String(32), primary_key=True),
        sa.Column("camera_id", _ID, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("paused_until", sa.BigInteger, nullable=False),
        sa.Column("extended", sa.Boolean, nullable=False),
    )
    op.create_index("ix_objections_camera", "objections", ["camera_id", "recorded_at"])
    op.create_index("ix_objections_recorded_at", "objections", ["recorded_at"])


def downgrade() -> None:
    op.drop_table("objections")
    op.drop_table("policy_tombstones")
    op.drop_table("cameras")
    op.drop_table("policy_sequence")
