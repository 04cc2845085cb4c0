"""Persistent state: SQLAlchemy tables on SQLite (default) or PostgreSQL, migrated with Alembic."""
