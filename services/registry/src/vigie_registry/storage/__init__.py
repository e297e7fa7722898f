"""The registry's tables (SQLite by default, PostgreSQL in production) and their migrations."""
