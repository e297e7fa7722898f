"""Alembic environment: runs on the connection :func:`vigie_audit.store.migrate` passes in."""

from alembic import context

from vigie_audit.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the journal's migrations with 'python -m vigie_audit migrate'")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
