"""Storage of buckets and releases: SQLAlchemy 2 (asyncio), SQLite by default, PostgreSQL in production."""
