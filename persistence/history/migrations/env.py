"""Alembic environment: runs on the connection :mod:`persistence.history.schema` hands over.

There is no ``alembic.ini`` and no URL here: the caller opens the connection (so the password
never passes through Alembic's config file or its logs) and the migrations run inside the
caller's transaction, which is atomic on PostgreSQL and, with the engine from
:mod:`persistence.history.engine`, on SQLite too. Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from persistence.history.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "history migrations run through persistence.history.schema (python run.py migrate)"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copy-and-move
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
