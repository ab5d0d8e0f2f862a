"""The control inbox: how an operator's command reaches a running Bastion.

The position store belongs to one process (it holds the writer lock), so a command given while
the service runs (``run.py kill``, ``resume``, ``reconcile``, ``python -m ops.place_missing_stops
--apply``) is written here instead: ``<data_dir>/<mode>/control.db``, WAL SQLite, one row per
request. The service polls it on every timer beat (four times a second), runs each pending request
through the same control functions the command line uses when the service is down, and writes the
result back; the command waits for that result and prints it. A request the service has not
taken yet survives a crash or a stop and runs at the next start, so a kill given to a dying
service is not lost.
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
    status TEXT NOT NULL DEFAULT 'pending',
    result TEXT,
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests (status) WHERE status = 'pending';
"""
PENDING, DONE, FAILED = "pending", "done", "failed"


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

    def submit(self, command: str, args: dict[str, Any], requested_by: str) -> int:
        cur = self._conn.execute(
            "INSERT INTO requests (command, args, requested_by, requested_at) VALUES (?, ?, ?, ?)",
            (command, json.dumps(args, sort_keys=True), requested_by, _now_ms()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def pending(self) -> list[Request]:
        rows = self._conn.execute(
            "SELECT id, command, args, requested_by, requested_at FROM requests "
            "WHERE status = 'pending' ORDER BY id"
        ).fetchall()
        return [Request(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

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
        """The request's status and result once handled, or ``("pending", None)`` on timeout."""
        deadline = clock() + timeout_s
        while True:
            status, result = self.result(request_id)
            if status != PENDING or clock() >= deadline:
                return status, result
            time.sleep(poll_s)


def _now_ms() -> int:
    return int(time.time() * 1000)
