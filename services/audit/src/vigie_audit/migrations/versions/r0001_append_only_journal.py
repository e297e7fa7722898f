"""The append-only journal: entries, cameras, tree nodes, signed tree heads, rejected messages.

The database itself refuses to change what was written:

- PostgreSQL: a row trigger on every table refuses UPDATE and DELETE, a statement trigger refuses
  TRUNCATE. The one exception is retention: inside ``vigie_audit_prune(cutoff, pruned_at)``, a
  SECURITY DEFINER function that switches on the transaction-local setting ``vigie.audit_prune``, the
  trigger lets through exactly one shape of UPDATE on ``audit_entries`` (clear ``leaf`` and ``actor``,
  set ``pruned_at``, change nothing else) and the DELETE of expired rejected messages. Grant the
  service's role INSERT and SELECT on the tables and EXECUTE on the function, nothing else.
- SQLite (the embedded default): triggers refuse DELETE and every UPDATE but the same pruning shape.
  Anyone who can write the file can drop them; the Merkle tree and the signed tree heads are what
  make such a change detectable.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)
_TABLES = (
    "audit_entries",
    "audit_entry_cameras",
    "audit_tree_nodes",
    "audit_tree_heads",
    "audit_rejected_messages",
)
# Columns a pruning UPDATE must leave as they are.
_KEPT = ("idx", "event_id", "logged_at", "occurred_at", "service", "action", "outcome")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("idx", _BIG_KEY, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("logged_at", _TIME, nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("leaf", sa.LargeBinary),
        sa.Column("pruned_at", _TIME),
        sa.UniqueConstraint("event_id", name="uq_audit_entries_event_id"),
    )
    op.create_index("ix_audit_entries_actor", "audit_entries", ["actor", "idx"])
    op.create_index("ix_audit_entries_action", "audit_entries", ["action", "idx"])
    op.create_index("ix_audit_entries_service", "audit_entries", ["service", "idx"])
    op.create_index("ix_audit_entries_occurred_at", "audit_entries", ["occurred_at"])
    op.create_index("ix_audit_entries_logged_at", "audit_entries", ["logged_at"])
    op.create_table(
        "audit_entry_cameras",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("entry_idx", sa.BigInteger, primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("node_index", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("id", _BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_audit_tree_heads_tree_size", "audit_tree_heads", ["tree_size"])
    op.create_table(
        "audit_rejected_messages",
        sa.Column("id", _BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_guards()
    elif dialect == "sqlite":
        _sqlite_guards()


def _is_prune_shape(old: str, new: str) -> str:
    kept = " AND ".join(f"{new}.{c} IS NOT DISTINCT FROM {old}.{c}" for c in _KEPT)
    return (
        f"{old}.leaf IS NOT NULL AND {new}.leaf IS NULL AND {new}.actor IS NULL "
        f"AND {new}.pruned_at IS NOT NULL AND {kept}"
    )


def _postgresql_guards() -> None:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    op.execute(f"""
        CREATE FUNCTION vigie_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF current_setting('vigie.audit_prune', true) = 'on' THEN
            IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_entries' THEN
              IF {_is_prune_shape("OLD", "NEW")} THEN
                RETURN NEW;
              END IF;
            ELSIF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_rejected_messages' THEN
              RETURN OLD;
            END IF;
          END IF;
          RAISE EXCEPTION 'the audit journal is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only vigie_audit_prune() may clear the payloads of expired entries';
        END
        $$
    """)
    op.execute("""
        CREATE FUNCTION vigie_audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'the audit journal is append-only: TRUNCATE on % refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
        END
        $$
    """)
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION vigie_audit_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION vigie_audit_refuse_truncate()"
        )
    # The explicit pruning path. The setting is transaction-local and switched off again before
    # returning, so it cannot leak to the caller's other statements.
    op.execute(f"""
        CREATE FUNCTION vigie_audit_prune(p_cutoff timestamptz, p_pruned_at timestamptz)
        RETURNS TABLE (pruned_count bigint, first_index bigint, last_index bigint, rejected_count bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = "{schema}", pg_temp AS $$
        BEGIN
          PERFORM set_config('vigie.audit_prune', 'on', true);
          WITH pruned AS (
            UPDATE audit_entries SET leaf = NULL, actor = NULL, pruned_at = p_pruned_at
            WHERE leaf IS NOT NULL AND logged_at < p_cutoff
            RETURNING idx
          )
          SELECT count(*), min(idx), max(idx) INTO pruned_count, first_index, last_index FROM pruned;
          DELETE FROM audit_rejected_messages WHERE received_at < p_cutoff;
          GET DIAGNOSTICS rejected_count = ROW_COUNT;
          PERFORM set_config('vigie.audit_prune', 'off', true);
          RETURN NEXT;
        END
        $$
    """)


def _sqlite_guards() -> None:
    message = "the audit journal is append-only"
    op.execute(f"""
        CREATE TRIGGER audit_entries_append_only BEFORE UPDATE ON audit_entries
        WHEN NOT ({_is_prune_shape("OLD", "NEW").replace("IS NOT DISTINCT FROM", "IS")})
        BEGIN SELECT RAISE(ABORT, '{message}: only retention may clear a payload'); END
    """)
    for table in _TABLES:
        if table != "audit_entries":
            op.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        if table != "audit_rejected_messages":
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the audit journal is never downgraded: restore a backup instead")
