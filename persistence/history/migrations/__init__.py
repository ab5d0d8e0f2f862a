"""Alembic migrations of the history database (run through :mod:`persistence.history.schema`)."""
