"""Alembic migrations of the registry's tables, run at start-up by
:func:`vigie_core.database.migrate`."""
