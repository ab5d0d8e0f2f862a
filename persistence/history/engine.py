"""Engines for the history database: SQLite (WAL) or PostgreSQL (psycopg 3).

- URLs are normalised: ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``.
- SQLite: ``journal_mode=WAL``, ``synchronous=FULL``, ``foreign_keys=ON`` and a busy timeout on
  every connection; transactions start with an explicit ``BEGIN`` (the SQLAlchemy recipe), so a
  migration's DDL commits or rolls back as a whole, as it does on PostgreSQL.
- PostgreSQL: a small pool, ``pool_pre_ping`` (a restarted server is noticed before a write
  fails), recycled connections and a connect timeout.
- A URL is only ever shown through :func:`safe_url`, which hides the password.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from domain.errors import BastionError

BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 10
# A connection whose peer vanished without a reset (a dropped network) is noticed within about
# 25 s instead of the kernel's ~15 min of retransmissions.
PG_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}
PG_POOL = {"pool_size": 5, "max_overflow": 5, "pool_timeout": 30, "pool_recycle": 1800}
_PG_ALIASES = frozenset({"postgresql", "postgres"})
_PASSWORD_RE = re.compile(r"(://[^:/@]*):[^@/]*@|((?:ssl)?password=)[^&]*", re.IGNORECASE)
_QUERY_SECRETS = frozenset({"password", "sslpassword"})


class BadDatabaseUrl(BastionError):
    """The history database URL cannot be used (syntax, backend or driver); a config error."""


def normalise_url(url: str | URL) -> URL:
    """``url`` parsed, with PostgreSQL pointed at the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadDatabaseUrl(f"not a database URL: {_hide(url)}") from None
    except ValueError as err:  # e.g. a non-numeric port
        raise BadDatabaseUrl(f"not a database URL: {_hide(url)} ({err})") from None
    if parsed.drivername in _PG_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise BadDatabaseUrl(
            f"unsupported database {safe_url(parsed)}: use sqlite:///PATH or postgresql://..."
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as text with its password (userinfo or ``password=`` parameter) as ``***``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _hide(url)
    hidden = {k: "***" for k in parsed.query if k.lower() in _QUERY_SECRETS}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _hide(url: str | URL) -> str:
    """Mask ``user:password@`` and ``password=`` in text that did not parse as a URL."""
    return _PASSWORD_RE.sub(
        lambda m: f"{m.group(1)}:***@" if m.group(1) is not None else f"{m.group(2)}***", str(url)
    )


def sqlite_path(url: URL) -> Path | None:
    """The file behind an SQLite URL, or None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def make_engine(
    url: str | URL,
    *,
    readonly: bool = False,
    connect_timeout_s: int = PG_CONNECT_TIMEOUT_S,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` with Bastion's settings for its backend (see module docstring).

    ``readonly`` (SQLite): the file is opened read-only and never created or changed, not even
    its journal mode, so looking at a database cannot alter it.
    """
    parsed = normalise_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_path(parsed)
            if readonly and path is not None:
                parsed = parsed.set(database=f"file:{path.as_posix()}").update_query_dict(
                    {"mode": "ro", "uri": "true"}
                )
            engine = create_engine(
                parsed,
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
                pool_pre_ping=True,
                **kwargs,
            )
            _configure_sqlite(engine, readonly=readonly)
            return engine
        options: dict[str, Any] = {**PG_POOL, **kwargs}
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": connect_timeout_s, **PG_KEEPALIVE},
            **options,
        )
    except (NoSuchModuleError, ArgumentError) as err:
        raise BadDatabaseUrl(f"cannot use {safe_url(parsed)}: {err}") from None


def _configure_sqlite(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver; SQLAlchemy's "begin" event below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not readonly:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


__all__ = ["BadDatabaseUrl", "make_engine", "normalise_url", "safe_url", "sqlite_path"]
