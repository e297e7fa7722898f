"""The classes each line and zone counted (``window_members.object_classes``); dwell buckets as members.

Rows stored before keep NULL, read as all six classes: what a report that did not say meant. Dwell buckets
(kind ``dwel``) need no schema change.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("window_members", sa.Column("object_classes", sa.Integer, nullable=True))


def downgrade() -> None:
    # Revision 0001 would read a dwell bucket as a geometry version.
    op.execute("DELETE FROM window_members WHERE kind = 'dwel'")
    # SQLite drops a column by copying the table (batch mode); PostgreSQL drops it in place.
    with op.batch_alter_table("window_members") as batch:
        batch.drop_column("object_classes")
