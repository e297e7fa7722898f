"""Alembic migrations of the registry's tables, run at start-up by
:func:`vigie_registry.storage.engine.migrate`."""
