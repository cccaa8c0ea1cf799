"""The cluster database: SQLAlchemy models, sessions and Alembic migrations."""
