"""The control inbox: how an operator's command reaches a running Bastion.

The position store belongs to one process (it holds the writer lock), so a command given while
the service runs (``run.py kill``, ``resume``, ``reconcile``, ``python -m ops.place_missing_stops
--apply``) is written here instead: ``<data_dir>/<mode>/control.db``, WAL SQLite, one row per
request. The service polls it on every timer beat (four times a second), runs each pending request
through the same control functions the command line uses when the service is down, and writes the
result back; the command waits for that result and prints it.

A request runs at most once: the service claims it (``pending`` -> ``running``) before running
it. Each request carries a deadline, the time its command waits for an answer: one not taken
by then is withdrawn (``expired``) by whichever side sees it first, so a ``resume`` given to a
hung service never runs hours later. A request still ``running`` when the service starts again
was cut off by a crash and is marked ``interrupted``, never run twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    result TEXT,
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests (status) WHERE status = 'pending';
"""
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
EXPIRED, INTERRUPTED = "expired", "interrupted"


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    command: str
    args: dict[str, Any]
    requested_by: str
    requested_at: int


class ControlInbox:
    """Requests for a running service; safe to use from several processes at once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"control inbox {self.path} cannot be used: {err}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ControlInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, command: str, args: dict[str, Any], requested_by: str, *, timeout_s: float
    ) -> int:
        """Queue a request that must be taken within ``timeout_s``."""
        now = _now_ms()
        cur = self._conn.execute(
            "INSERT INTO requests (command, args, requested_by, requested_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                command,
                json.dumps(args, sort_keys=True),
                requested_by,
                now,
                now + int(timeout_s * 1000),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def pending(self) -> list[Request]:
        """Requests waiting to run, oldest first; overdue ones are withdrawn, not returned."""
        self._conn.execute(
            "UPDATE requests SET status = ?, done_at = ? WHERE status = ? AND expires_at < ?",
            (EXPIRED, _now_ms(), PENDING, _now_ms()),
        )
        rows = self._conn.execute(
            "SELECT id, command, args, requested_by, requested_at FROM requests "
            "WHERE status = 'pending' ORDER BY id"
        ).fetchall()
        return [Request(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def claim(self, request_id: int) -> bool:
        """Take a pending request to run it; False if it was withdrawn or taken meanwhile."""
        return self._move(request_id, PENDING, RUNNING)

    def withdraw(self, request_id: int) -> bool:
        """Give up on a request not taken yet; False when it is already running or done."""
        return self._move(request_id, PENDING, EXPIRED)

    def interrupt_running(self) -> int:
        """At a service start: requests a crash cut off are marked, never run again."""
        cur = self._conn.execute(
            "UPDATE requests SET status = ?, done_at = ? WHERE status = ?",
            (INTERRUPTED, _now_ms(), RUNNING),
        )
        return cur.rowcount

    def _move(self, request_id: int, source: str, dest: str) -> bool:
        cur = self._conn.execute(
            "UPDATE requests SET status = ? WHERE id = ? AND status = ?",
            (dest, request_id, source),
        )
        return cur.rowcount == 1

    def complete(self, request_id: int, result: dict[str, Any], *, ok: bool = True) -> None:
        self._conn.execute(
            "UPDATE requests SET status = ?, result = ?, done_at = ? WHERE id = ?",
            (DONE if ok else FAILED, json.dumps(result, default=str), _now_ms(), request_id),
        )

    def result(self, request_id: int) -> tuple[str, dict[str, Any] | None]:
        row = self._conn.execute(
            "SELECT status, result FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"control request {request_id} does not exist")
        return row[0], (json.loads(row[1]) if row[1] else None)

    def wait(
        self,
        request_id: int,
        timeout_s: float,
        *,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> tuple[str, dict[str, Any] | None]:
        """The request's status and result once finished; on timeout it is withdrawn if not
        taken yet (``expired``), or reported ``running``."""
        deadline = clock() + timeout_s
        while True:
            status, result = self.result(request_id)
            if status not in (PENDING, RUNNING):
                return status, result
            if clock() >= deadline:
                return (EXPIRED, None) if self.withdraw(request_id) else self.result(request_id)
            time.sleep(poll_s)


def _now_ms() -> int:
    return int(time.time() * 1000)
