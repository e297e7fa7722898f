"""The journal's tables (SQLAlchemy Core). The migrations in ``vigie_audit/migrations`` create them;
this module describes them for queries.

- ``audit_entries``: one row per leaf, index ``idx`` from 0. ``leaf`` holds the exact bytes hashed into
  the tree; the other columns are copies of its fields for filtering. Retention clears ``leaf`` and
  ``actor`` (and sets ``pruned_at``): the only change the database lets through.
- ``audit_entry_cameras``: which cameras an entry concerns, for the camera filter.
- ``audit_tree_nodes``: the hash of every perfect subtree (level 0: the leaf hashes), written once.
- ``audit_tree_heads``: every signed tree head.
- ``audit_rejected_messages``: messages of the AUDIT stream that were not valid events (dead letters),
  kept for inspection; not part of the tamper-evident journal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Uuid,
)
from sqlalchemy.types import TypeDecorator

# SQLite makes only "INTEGER PRIMARY KEY" the rowid; a BIGINT key would add a second index.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no time zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the journal stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    Column("idx", BigKey, primary_key=True, autoincrement=False),
    Column("event_id", Uuid(as_uuid=False), nullable=False, unique=True),
    Column("logged_at", UtcDateTime, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("service", String(64), nullable=False),
    Column("actor", String(128)),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("leaf", LargeBinary),
    Column("pruned_at", UtcDateTime),
)
Index("ix_audit_entries_actor", entries.c.actor, entries.c.idx)
Index("ix_audit_entries_action", entries.c.action, entries.c.idx)
Index("ix_audit_entries_service", entries.c.service, entries.c.idx)
Index("ix_audit_entries_occurred_at", entries.c.occurred_at)
Index("ix_audit_entries_logged_at", entries.c.logged_at)

entry_cameras = Table(
    "audit_entry_cameras",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    Column("entry_idx", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)

tree_nodes = Table(
    "audit_tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True),
    Column("node_index", BigInteger, primary_key=True),
    Column("hash", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

tree_heads = Table(
    "audit_tree_heads",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("log_id", String(128), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
)
Index("ix_audit_tree_heads_tree_size", tree_heads.c.tree_size)

rejected_messages = Table(
    "audit_rejected_messages",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("subject", String(256), nullable=False),
    Column("stream_sequence", BigInteger),
    Column("reason", String(1000), nullable=False),
    Column("payload", LargeBinary, nullable=False),
)
