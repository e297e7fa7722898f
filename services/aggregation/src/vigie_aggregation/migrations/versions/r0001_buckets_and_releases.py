"""Buckets (applied reports, camera windows, members, crossings, occupancy, dwell) and releases (published
cells, coverage, privacy-budget ledger).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
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
        "applied_reports",
        sa.Column("report_id", sa.String(32), primary_key=True),
        sa.Column("camera_id", _ID, nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("closed_by", sa.SmallInteger, nullable=False),
        sa.Column("geometry_version", _ID, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_applied_reports_window_start", "applied_reports", ["window_start"])
    op.create_table(
        "camera_windows",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("covered_seconds", sa.Float, nullable=False),
        sa.Column("frames", sa.BigInteger, nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
    )
    op.create_index("ix_camera_windows_window_start", "camera_windows", ["window_start"])
    op.create_table(
        "window_members",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.String(4), primary_key=True),
        sa.Column("member_id", _ID, primary_key=True),
    )
    op.create_table(
        "crossing_buckets",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("line_id", _ID, primary_key=True),
        sa.Column("direction", sa.SmallInteger, primary_key=True),
        sa.Column("object_class", sa.SmallInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "occupancy_buckets",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("zone_id", _ID, primary_key=True),
        sa.Column("object_class", sa.SmallInteger, primary_key=True),
        sa.Column("object_seconds", sa.Float, nullable=False),
        sa.Column("max_objects", sa.Integer, nullable=False),
    )
    op.create_table(
        "dwell_buckets",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("zone_id", _ID, primary_key=True),
        sa.Column("object_class", sa.SmallInteger, primary_key=True),
        sa.Column("dwell_bucket", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("site_id", _ID, primary_key=True),
        sa.Column("granularity", sa.SmallInteger, primary_key=True),
        sa.Column("period_start", sa.BigInteger, primary_key=True),
        sa.Column("released_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "published_cells",
        sa.Column("family", sa.SmallInteger, primary_key=True),
        sa.Column("granularity", sa.SmallInteger, primary_key=True),
        sa.Column("site_id", _ID, primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("period_start", sa.BigInteger, primary_key=True),
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("item_id", _ID, primary_key=True),
        sa.Column("direction", sa.SmallInteger, primary_key=True),
        sa.Column("object_class", sa.SmallInteger, primary_key=True),
        sa.Column("dwell_bucket", sa.String(32), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("max_objects", sa.Integer),
        sa.Column("suppressed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32)),
    )
    op.create_index(
        "ix_published_cells_camera",
        "published_cells",
        [
            "family",
            "granularity",
            "camera_id",
            "level",
            "period_start",
            "item_id",
            "direction",
            "object_class",
            "dwell_bucket",
        ],
    )
    op.create_table(
        "published_coverage",
        sa.Column("granularity", sa.SmallInteger, primary_key=True),
        sa.Column("site_id", _ID, primary_key=True),
        sa.Column("period_start", sa.BigInteger, primary_key=True),
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("period_seconds", sa.Integer, nullable=False),
        sa.Column("covered_seconds", sa.Float, nullable=False),
        sa.Column("frames", sa.BigInteger, nullable=False),
        sa.Column("geometry_versions", sa.String(400), nullable=False),
        sa.Column("status", sa.String(32)),
    )
    op.create_table(
        "privacy_budget_ledger",
        sa.Column("camera_id", _ID, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("budget_period_start", sa.BigInteger, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_privacy_budget_ledger_period", "privacy_budget_ledger", ["camera_id", "budget_period_start"]
    )


def downgrade() -> None:
    for table in (
        "privacy_budget_ledger",
        "published_coverage",
        "published_cells",
        "releases",
        "dwell_buckets",
        "occupancy_buckets",
        "crossing_buckets",
        "window_members",
        "camera_windows",
        "applied_reports",
    ):
        op.drop_table(table)
