"""Alembic environment: runs on the connection :func:`vigie_core.database.migrate` passes in."""

from alembic import context

from vigie_aggregation.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the aggregation's migrations run at service start-up (vigie_core.database.migrate)")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
