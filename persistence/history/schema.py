"""Create, upgrade and check the history database's schema with its Alembic migrations.

Alembic is configured here, in code: the migrations ship inside the package
(``persistence/history/migrations``) and run on a connection this module opens, so no
``alembic.ini`` is needed and no URL (nor password) passes through Alembic. Every operation
runs in one transaction.

:func:`check` is what a service calls before it writes history: it refuses a database that
was never migrated, one that is behind (both: "run ``python run.py migrate``") and one stamped
with a revision this Bastion does not know (written by a newer Bastion; never touched).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from domain.errors import BastionError, StoreError
from persistence.history.engine import make_engine, normalise_url, safe_url, sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATE_HINT = "run `python run.py migrate`"
# The service checks the schema before trading; an unreachable host must not hold that up long.
SCHEMA_CONNECT_TIMEOUT_S = 5


class HistorySchemaError(StoreError):
    """The history database's schema cannot be used by this Bastion."""


class HistorySchemaMissing(HistorySchemaError):
    """The database has no history schema yet, or an older one."""


class HistorySchemaTooNew(HistorySchemaError):
    """The database is at a revision this Bastion does not know (a newer Bastion wrote it)."""


class HistoryUnreachable(BastionError):
    """The database could not be opened or reached (wrong host, credentials, path)."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this Bastion knows."""
    heads = _scripts().get_heads()
    if len(heads) != 1:  # a packaging error, caught by the tests
        raise HistorySchemaError(f"history migrations have {len(heads)} heads: {heads}")
    return heads[0]


def revisions() -> list[str]:
    """Every known revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


@contextmanager
def _transaction(
    url: str | URL, *, create_dir: bool = False, readonly: bool = False
) -> Iterator[Connection]:
    parsed = normalise_url(url)
    path = sqlite_path(parsed)
    if path is not None and create_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine: Engine = make_engine(
        parsed, readonly=readonly, connect_timeout_s=SCHEMA_CONNECT_TIMEOUT_S
    )
    try:
        try:
            with engine.begin() as connection:
                yield connection
        except OperationalError as err:
            if err.connection_invalidated or _is_connect_error(err):
                raise HistoryUnreachable(
                    f"cannot open the history database {safe_url(parsed)}: {_first_line(err)}"
                ) from None
            raise
    finally:
        engine.dispose()


def _missing_file(url: str | URL) -> bool:
    path = sqlite_path(normalise_url(url))
    return path is not None and not path.exists()


def _is_connect_error(err: OperationalError) -> bool:
    return err.statement is None or "unable to open database file" in str(err.orig)


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _current(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise HistorySchemaError(f"history database has several revisions stamped: {heads}")
    return heads[0] if heads else None


def _refuse_unknown(revision: str | None, url: str | URL) -> None:
    if revision is not None and revision not in revisions():
        raise HistorySchemaTooNew(
            f"history database {safe_url(url)} is at revision {revision!r}, unknown to this "
            f"Bastion (newest known: {head()!r}); it was written by a newer Bastion, "
            "refusing to touch it"
        )


def current(url: str | URL) -> str | None:
    """The revision the database is at, or None when it was never migrated (read-only; an
    SQLite file that does not exist is a database never migrated)."""
    if _missing_file(url):
        return None
    with _transaction(url, readonly=True) as connection:
        return _current(connection)


def upgrade(url: str | URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database up to ``revision``; returns (from, to). Creates an SQLite file."""
    with _transaction(url, create_dir=True) as connection:
        before = _current(connection)
        _refuse_unknown(before, url)
        command.upgrade(_config(connection), revision)
        return before, _current(connection)


def downgrade(url: str | URL, revision: str) -> tuple[str | None, str | None]:
    """Migrate the database down to ``revision`` (``"base"`` drops every table); (from, to)."""
    with _transaction(url) as connection:
        before = _current(connection)
        _refuse_unknown(before, url)
        command.downgrade(_config(connection), revision)
        return before, _current(connection)


def check(url: str | URL) -> str:
    """The database's revision if it is exactly this Bastion's head, else a clear error.

    Read-only: a database that is refused is left exactly as it was."""
    expected = head()
    if _missing_file(url):
        raise HistorySchemaMissing(
            f"history database {safe_url(url)} does not exist; {MIGRATE_HINT}"
        )
    with _transaction(url, readonly=True) as connection:
        found = _current(connection)
    if found == expected:
        return found
    if found is None:
        raise HistorySchemaMissing(
            f"history database {safe_url(url)} has no schema; {MIGRATE_HINT}"
        )
    _refuse_unknown(found, url)
    raise HistorySchemaMissing(
        f"history database {safe_url(url)} is at revision {found!r}, this Bastion needs "
        f"{expected!r}; {MIGRATE_HINT}"
    )


__all__ = [
    "MIGRATE_HINT",
    "HistorySchemaError",
    "HistorySchemaMissing",
    "HistorySchemaTooNew",
    "HistoryUnreachable",
    "check",
    "current",
    "downgrade",
    "head",
    "revisions",
    "upgrade",
]
