"""The history writer: copies what Bastion did into the history database, never in its way.

One thread with a bounded mailbox (``history.queue_size``). Actors and the feed hand it
messages with :meth:`HistoryWriter.tell`, which never blocks: if the mailbox is full the
message is counted as dropped and logged (the writer has fallen behind even its local spool,
which means the disk is failing too). Every ``flush_interval_s`` or ``batch_size`` messages the
writer:

1. turns the messages into rows (:mod:`actors.audit`: audit events, candles, account snapshots
   at most one per ``account_snapshot_interval_s``) and reads the position store's new orders,
   order events, fills and trades (:class:`~persistence.history.tail.StoreTail`; the store is
   durable, so these survive a crash of the process);
2. writes the batch to the database in one transaction, idempotently
   (:func:`~persistence.history.rows.write_rows`), and moves its store cursor;
3. if the database cannot be reached (or its schema is not this Bastion's), appends the batch
   and the cursor to the local spool instead (:class:`~persistence.history.spool.Spool`), and
   from then on spools everything, in order, until a replay of the whole spool succeeds.
   Retries back off from 0.5 s doubling to ``retry_max_s``.

A row the database refuses for good (a constraint or a value it cannot hold, not an outage) is
retried alone, then moved to the spool's ``rejected`` table and logged: kept for an operator,
never blocking the rows behind it. Retention (:mod:`persistence.history.retention`) runs on
the same thread every ``prune_interval_s`` while the database is up.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from actors.audit import Observed, audit_of, candle_row, event_row, snapshot_row
from actors.messages import AccountEquity, Audit
from adapters.marketdata.events import CandleClosed
from adapters.settings import HistorySettings, Settings, history_url
from domain.errors import Fatal
from persistence.history import schema
from persistence.history.engine import (
    BadDatabaseUrl,
    make_engine,
    normalise_url,
    safe_url,
    sqlite_path,
)
from persistence.history.retention import RetentionPolicy, prune
from persistence.history.rows import Row, write_rows
from persistence.history.spool import Spool
from persistence.history.tail import Cursor, StoreTail

log = structlog.get_logger(__name__)
FIRST_RETRY_S = 0.5
REPLAY_BATCHES_PER_TURN = 20  # then new messages get a turn (they are spooled meanwhile)
DROP_LOG_EVERY_S = 10.0
STOP_TIMEOUT_S = 10.0
PRUNE_BATCHES_PER_TURN = 20
SPOOL_NAME = "history-spool.db"  # next to the mode's position store


def _refused_for_good(err: BaseException) -> bool:
    """A write error that retrying cannot fix (the rows are wrong, the database is fine)."""
    if isinstance(err, (IntegrityError, DataError)):
        return True
    return isinstance(err, StatementError) and isinstance(err.orig, (ValueError, TypeError))


@dataclass
class WriterStats:
    """Counters for status, metrics and tests."""

    received: int = 0
    dropped: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    outages: int = 0
    db_up: bool = False
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class HistoryWriter(threading.Thread):
    """Writes history rows to ``url``; spools to ``spool_path`` while it cannot."""

    def __init__(
        self,
        url: str,
        *,
        spool_path: Path,
        params: HistorySettings,
        store_path: Path | None = None,
        engine: Engine | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        super().__init__(name="bastion-history", daemon=True)
        self.url = url
        self.params = params
        self.stats = WriterStats()
        self._mailbox: queue.Queue[object] = queue.Queue(maxsize=params.queue_size)
        self._engine = engine or make_engine(url)
        self._spool = Spool(spool_path)
        self._tail = StoreTail(store_path) if store_path is not None else None
        self._cursor = Cursor.of(self._spool.cursor())
        self._wall_ms = wall_ms
        self._halt = threading.Event()
        self._idle = threading.Event()
        self._schema_ok = False
        self._retry_s = FIRST_RETRY_S
        self._retry_at = 0.0
        self._dropped_logged_at = 0.0
        self._snapshot_at: int | None = None
        self._pruned_at = time.monotonic()
        self._retention = RetentionPolicy.from_settings(params)
        self.tap: Callable[[Sequence[Row]], None] | None = None  # sees every batch (tests)
        self._left_in_spool: int | None = None

    # ------------------------------------------------------------------ producers' side

    def tell(self, message: object) -> None:
        """Hand ``message`` over; never blocks (a full mailbox counts it as dropped)."""
        try:
            self._mailbox.put_nowait(message)
        except queue.Full:
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at >= DROP_LOG_EVERY_S:
                self._dropped_logged_at = now
                log.error("history_queue_full", dropped=self.stats.dropped)
        else:
            self._idle.clear()

    def ask(self, message: object, timeout: float | None = None) -> Any:
        raise TypeError("the history writer takes tells only")

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        log.info("history_writer_started", url=safe_url(self.url), spooled=self._spool.pending())
        while not self._halt.is_set():
            try:
                self._turn(wait_s=self.params.flush_interval_s)
            except Exception as err:  # the writer must outlive any one bad batch
                log.exception("history_writer_error", error=str(err))
                self._halt.wait(FIRST_RETRY_S)
        self._final_turns()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Write or spool what is queued, then stop the thread and close the files."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout_s)
        self._left_in_spool = self._spool.pending()
        self._spool.close()
        if self._tail is not None:
            self._tail.close()
        self._engine.dispose()

    def _final_turns(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S / 2
        try:
            while time.monotonic() < deadline:
                if not self._turn(wait_s=0.0, replay=False):
                    break
        except Exception as err:
            log.exception("history_writer_error", error=str(err))
        log.info("history_writer_stopped", **self.snapshot())

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until everything received and everything in the store is in the database
        (nothing queued, nothing spooled, the store tail caught up); False on timeout."""
        return self._idle.wait(timeout_s)

    def caught_up(self) -> bool:
        """The database is up and at this Bastion's schema, and nothing waits in the spool
        (rows still in the mailbox are written on the next turn)."""
        return self.stats.db_up and self._schema_ok and self._pending() == 0

    def _pending(self) -> int:
        """Rows in the spool (as the writer left it once stopped)."""
        return self._spool.pending() if self._left_in_spool is None else self._left_in_spool

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "db_up": s.db_up,
            "received": s.received,
            "written": s.written,
            "spooled": s.spooled,
            "replayed": s.replayed,
            "pending_in_spool": self._pending(),
            "rejected": s.rejected,
            "dropped": s.dropped,
            "outages": s.outages,
            "queued": self._mailbox.qsize(),
        }

    def _turn(self, *, wait_s: float, replay: bool = True) -> bool:
        """One batch: messages and store changes, written or spooled. True if it had any."""
        rows = self._rows(self._take(wait_s))
        cursor = self._cursor
        if self._tail is not None:
            tail_rows, cursor = self._tail.read(self._cursor, self.params.batch_size)
            rows.extend(tail_rows)
        busy = bool(rows) or cursor != self._cursor
        if busy:
            if self.tap is not None:
                self.tap(rows)
            self._deliver(rows, cursor)
        if replay:
            self._replay()
            self._maybe_prune()
        if not busy and self._mailbox.empty() and self._spool.pending() == 0 and self._schema_ok:
            self._idle.set()
        return busy

    def _take(self, wait_s: float) -> list[object]:
        taken: list[object] = []
        try:
            taken.append(
                self._mailbox.get(timeout=wait_s) if wait_s else self._mailbox.get_nowait()
            )
            while len(taken) < self.params.batch_size:
                taken.append(self._mailbox.get_nowait())
        except queue.Empty:
            pass
        self.stats.received += len(taken)
        return taken

    def _rows(self, messages: Sequence[object]) -> list[Row]:
        return rows_of(messages, self._snapshot_due)

    def _snapshot_due(self, ts: int) -> bool:
        every_ms = int(self.params.account_snapshot_interval_s * 1000)
        if self._snapshot_at is not None and ts - self._snapshot_at < every_ms:
            return False
        self._snapshot_at = ts
        return True

    # ------------------------------------------------------------------ writing

    def _deliver(self, rows: list[Row], cursor: Cursor) -> None:
        if self._spooling():
            self._to_spool(rows, cursor)
            return
        try:
            self._write(rows)
        except Exception as err:
            if _refused_for_good(err):
                self._to_spool(rows, cursor)  # the replay sorts the bad rows out, one by one
                self._retry_at = 0.0
                return
            self._went_down(err)
            self._to_spool(rows, cursor)
            return
        self.stats.written += len(rows)
        if cursor != self._cursor:
            self._spool.set_cursor(cursor.to_dict())
            self._cursor = cursor

    def _spooling(self) -> bool:
        return not self.stats.db_up or not self._schema_ok or self._spool.pending() > 0

    def _to_spool(self, rows: list[Row], cursor: Cursor) -> None:
        self._spool.append(rows, cursor.to_dict())
        self._cursor = cursor
        self.stats.spooled += len(rows)

    def _write(self, rows: Sequence[Row]) -> None:
        if not self._schema_ok:
            schema.check(self.url)
            self._schema_ok = True
        with self._engine.begin() as connection:
            write_rows(connection, rows)
        if not self.stats.db_up:
            self.stats.db_up = True
            self._retry_s = FIRST_RETRY_S
            log.info("history_db_up", url=safe_url(self.url))

    def _went_down(self, err: BaseException) -> None:
        self._schema_ok = self._schema_ok and not isinstance(err, schema.HistorySchemaError)
        if self.stats.db_up or not self.stats.last_error:
            self.stats.outages += 1
            log.warning("history_db_down", url=safe_url(self.url), error=_short(err))
        self.stats.db_up = False
        self.stats.last_error = _short(err)
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, self.params.retry_max_s)

    def _replay(self) -> None:
        if self._spool.pending() == 0 and self.stats.db_up and self._schema_ok:
            return
        if time.monotonic() < self._retry_at:
            return
        replayed = 0
        try:
            for _ in range(REPLAY_BATCHES_PER_TURN):
                batch = self._spool.peek(self.params.batch_size)
                if not batch:
                    if not self.stats.db_up or not self._schema_ok:
                        self._write([])  # an empty spool: just see whether the database is back
                    break
                try:
                    self._write([row for _, row in batch])
                except Exception as err:
                    if not _refused_for_good(err):
                        raise
                    self._write_one_by_one(batch)
                self._spool.remove_through(batch[-1][0])
                replayed += len(batch)
        except Exception as err:
            self._went_down(err)
        finally:
            if replayed:
                self.stats.replayed += replayed
                log.info("history_replayed", rows=replayed, pending=self._spool.pending())

    def _write_one_by_one(self, batch: list[tuple[int, Row]]) -> None:
        for seq, row in batch:
            try:
                self._write([row])
            except Exception as err:
                if not _refused_for_good(err):
                    raise
                self._spool.reject(seq, row, _short(err))
                self.stats.rejected += 1
                log.error("history_row_rejected", table=row.table, error=_short(err))

    def _maybe_prune(self) -> None:
        if (
            not self.stats.db_up
            or time.monotonic() - self._pruned_at < self.params.prune_interval_s
        ):
            return
        self._pruned_at = time.monotonic()
        try:
            prune(
                self._engine,
                self._retention,
                self._wall_ms(),
                max_batches=PRUNE_BATCHES_PER_TURN,
            )
        except Exception as err:
            log.warning("history_prune_failed", error=_short(err))


def rows_of(messages: Sequence[object], snapshot_due: Callable[[int], bool]) -> list[Row]:
    """The history rows of ``messages`` (audit events, candles, account snapshots when
    ``snapshot_due(ts)`` says so); messages the history does not record are logged and skipped."""
    rows: list[Row] = []
    for message in messages:
        match message:
            case Audit():
                rows.append(event_row(message, message.who or "bastion"))
            case Observed(message=AccountEquity() as reading):
                if snapshot_due(reading.ts):
                    rows.append(snapshot_row(reading))
            case Observed(source=source):
                audit = audit_of(message)
                if audit is not None:
                    rows.append(event_row(audit, source))
            case CandleClosed():
                rows.append(candle_row(message))
            case _:
                log.warning("history_message_ignored", message=type(message).__name__)
    return rows


def spool_for_later(store_path: Path, messages: Sequence[object]) -> int:
    """Put ``messages`` in the mode's history spool, for a tool running while the service is
    down (it holds the store's lock): the service's writer replays them when it next starts.
    Returns how many rows were spooled."""
    rows = rows_of(messages, lambda _ts: True)
    if rows:
        spool = Spool(store_path.with_name(SPOOL_NAME))
        try:
            spool.append(rows)
        finally:
            spool.close()
    return len(rows)


def open_history(settings: Settings, mode: str, store_path: Path) -> HistoryWriter:
    """Check the mode's history database and start its writer (the service's startup step).

    The default SQLite file is created at the newest schema the first time. Any other database
    must already be at this Bastion's schema: one that is behind or newer stops startup
    (``HistorySchemaError``, exit 3) with the migrate hint. A database that cannot be reached
    does not stop trading: the writer spools until it can (``history_db_unreachable``).
    """
    url = history_url(settings, mode)
    try:
        parsed = normalise_url(url)
        path = sqlite_path(parsed)
        if settings.database_url is None and path is not None and not path.exists():
            schema.upgrade(url)
            log.info("history_db_created", url=safe_url(url), revision=schema.head())
        else:
            schema.check(url)
    except BadDatabaseUrl as err:
        raise Fatal(str(err)) from None
    except schema.HistoryUnreachable as err:
        log.warning("history_db_unreachable", url=safe_url(url), error=str(err))
    writer = HistoryWriter(
        url,
        spool_path=store_path.with_name(SPOOL_NAME),
        params=settings.history,
        store_path=store_path,
    )
    writer.start()
    return writer


def _short(err: BaseException) -> str:
    """The first line of an error (database errors append the whole statement)."""
    return (str(err).splitlines() or [type(err).__name__])[0][:300]


__all__ = ["HistoryWriter", "WriterStats", "open_history", "rows_of", "spool_for_later"]
