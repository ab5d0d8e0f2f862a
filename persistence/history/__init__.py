"""The history database: trades, orders, fills, candles, account snapshots and the audit trail.

SQLAlchemy 2 models (:mod:`.models`) on SQLite or PostgreSQL, created and upgraded only by the
hand-written Alembic migrations in ``migrations/`` (:mod:`.schema`); :mod:`.engine` builds
engines. Unlike the position store, this database is a record, not a source of truth: losing it
never endangers a position.
"""
