"""Alembic migrations of the journal's tables (run by :func:`vigie_audit.store.migrate`)."""
