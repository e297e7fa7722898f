"""Alembic migrations of the aggregation's tables, run at start-up by
:func:`vigie_core.database.migrate`."""
