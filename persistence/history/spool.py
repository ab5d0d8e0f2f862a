"""The history writer's local spool: rows waiting for the database, in order, on disk.

While the history database is unreachable the writer appends here instead; when it returns,
the rows are replayed oldest first and removed only after the database committed them. A crash
between the two replays those rows again, which the database's natural keys absorb
(:func:`persistence.history.rows.write_rows`), so nothing is lost and nothing doubles.

The spool is a small WAL SQLite file next to the position store (``history-spool.db``), with
``synchronous=FULL``: one transaction per appended batch. It also keeps the writer's cursor
into the position store (how far store changes were handed on), updated in the same
transaction as the rows it covers. Rows the database refuses for good (a constraint, not an
outage) are moved to ``rejected`` with the error, kept for an operator rather than retried
forever or dropped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persistence.history.rows import Row

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pending (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, error TEXT NOT NULL,
        at INTEGER NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class Spool:
    """Rows in arrival order; ``append`` and ``remove_through`` are each one transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._tx() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # a failed COMMIT (disk full) leaves one open
                self._conn.execute("ROLLBACK")
            raise

    def append(self, rows: Sequence[Row], cursor: dict[str, Any] | None = None) -> None:
        """Add ``rows`` after every row already here (and move the cursor) atomically."""
        with self._tx() as db:
            db.executemany("INSERT INTO pending (body) VALUES (?)", [(r.to_json(),) for r in rows])
            if cursor is not None:
                _put(db, "cursor", cursor)

    def peek(self, limit: int) -> list[tuple[int, Row]]:
        """The oldest ``limit`` rows with their sequence numbers."""
        found = self._conn.execute(
            "SELECT seq, body FROM pending ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(seq, Row.from_json(body)) for seq, body in found]

    def remove_through(self, seq: int) -> None:
        """Forget every row up to and including ``seq`` (the database has them)."""
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE seq <= ?", (seq,))

    def reject(self, seq: int | None, row: Row, error: str) -> None:
        """Move ``row`` (pending ``seq``, or a row never spooled) aside with ``error``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO rejected (body, error, at) VALUES (?, ?, ?)",
                (row.to_json(), error[:2000], int(time.time() * 1000)),
            )
            if seq is not None:
                db.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def pending(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])

    def rejected(self) -> list[tuple[Row, str]]:
        found = self._conn.execute("SELECT body, error FROM rejected ORDER BY seq").fetchall()
        return [(Row.from_json(body), error) for body, error in found]

    def cursor(self) -> dict[str, Any]:
        found = self._conn.execute("SELECT value FROM kv WHERE key = 'cursor'").fetchone()
        return dict(json.loads(found[0])) if found else {}

    def set_cursor(self, cursor: dict[str, Any]) -> None:
        with self._tx() as db:
            _put(db, "cursor", cursor)


def _put(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


__all__ = ["Spool"]
