"""Alembic migrations of the aggregation's tables, run at start-up by
:func:`vigie_aggregation.storage.engine.migrate`."""
