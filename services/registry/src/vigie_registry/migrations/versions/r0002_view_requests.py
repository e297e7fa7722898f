"""Each camera's current request for a scene view.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cameras") as table:
        table.add_column(sa.Column("view_request_id", sa.String(36)))
        table.add_column(sa.Column("view_requested_at", sa.BigInteger))
        table.add_column(sa.Column("view_sample_seconds", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("cameras") as table:
        table.drop_column("view_sample_seconds")
        table.drop_column("view_requested_at")
        table.drop_column("view_request_id")
