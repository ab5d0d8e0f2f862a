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

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

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


def _transient(err: BaseException) -> bool:
    """An error of the database or the way to it (retry later, spool meanwhile), as opposed to
    a row it refuses for good (a constraint, a value it cannot hold) or a fault in the rows."""
    if isinstance(err, (DisconnectionError, PoolTimeout, schema.HistoryUnreachable)):
        return True
    if isinstance(err, schema.HistorySchemaError):
        return True  # unmigrated or too new: an operator fixes the database, not the rows
    if isinstance(err, DBAPIError):
        return err.connection_invalidated or isinstance(
            err, (OperationalError, InterfaceError, ProgrammingError, InternalError)
        )
    return False


@dataclass
class WriterStats:
    """Counters for status, metrics and tests (written by the writer thread only)."""

    received: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    unusable: int = 0  # messages that could not be turned into rows (logged)
    errors: int = 0  # turns that failed (logged); their rows stay queued
    outages: int = 0
    db_up: bool = False
    last_error: str = ""


class HistoryWriter(threading.Thread):
    """Writes history rows to ``url``; spools to ``spool_path`` while it cannot.

    The thread owns its database engine, spool and store reader and closes them when it ends.
    """

    def __init__(
        self,
        url: str,
        *,
        spool_path: Path,
        params: HistorySettings,
        store_path: Path | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        super().__init__(name="bastion-history", daemon=True)
        self.url = url
        self.params = params
        self.stats = WriterStats()
        self.tap: Callable[[Sequence[Row]], None] | None = None  # sees each new batch (tests)
        self._mailbox: queue.Queue[object] = queue.Queue(maxsize=params.queue_size)
        self._engine = make_engine(url)
        self._spool = Spool(spool_path)
        self._tail = StoreTail(store_path) if store_path is not None else None
        self._cursor = Cursor.of(self._spool.cursor())
        self._pending = self._spool.pending()  # rows in the spool, kept by the writer thread
        self._carry: list[Row] = []  # rows of messages taken but not yet written or spooled
        self._wall_ms = wall_ms
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._dropped = 0
        self._dropped_logged_at = 0.0
        self._idle = threading.Condition()
        self._asked_gen = 0  # wait_idle's requests, and the latest answered by a quiet turn
        self._quiet_gen = 0
        self._schema_ok = False
        self._retry_s = FIRST_RETRY_S
        self._retry_at = 0.0
        self._snapshot_at: int | None = None
        self._pruned_at = time.monotonic()
        self._retention = RetentionPolicy.from_settings(params)

    # ------------------------------------------------------------------ producers' side

    def tell(self, message: object) -> None:
        """Hand ``message`` over; never blocks (a full mailbox counts it as dropped)."""
        try:
            self._mailbox.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                dropped, now = self._dropped, time.monotonic()
                due = now - self._dropped_logged_at >= DROP_LOG_EVERY_S
                if due:
                    self._dropped_logged_at = now
            if due:
                log.error("history_queue_full", dropped=dropped)

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        log.info("history_writer_started", url=safe_url(self.url), spooled=self._pending)
        try:
            while not self._halt.is_set():
                try:
                    self._turn(wait_s=self.params.flush_interval_s)
                except Exception as err:  # the writer outlives any one bad turn
                    self.stats.errors += 1
                    log.exception("history_writer_error", error=_short(err))
                    self._halt.wait(FIRST_RETRY_S)
            self._final_turns()
        finally:
            self._close()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Spool what is still queued (no database call once stopping), then end the thread."""
        self._halt.set()
        if self.ident is None:  # never started: nothing else uses the files
            self._close()
            return
        self.join(timeout_s)
        if self.is_alive():  # stuck in a database call: it closes its files when it returns
            log.error("history_writer_stuck", timeout_s=timeout_s, **self.snapshot())

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._spool.close()
        if self._tail is not None:
            self._tail.close()
        self._engine.dispose()

    def _final_turns(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S / 2
        try:
            while time.monotonic() < deadline and self._turn(wait_s=0.0, replay=False):
                pass
        except Exception as err:
            log.exception("history_writer_error", error=_short(err))
        log.info("history_writer_stopped", **self.snapshot())

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until a turn that started after this call found nothing to do: everything told
        before the call and everything in the store is in the database, nothing is spooled.
        False on timeout (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            self._asked_gen += 1
            target = self._asked_gen
            while self._quiet_gen < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return False
        return True

    def caught_up(self) -> bool:
        """The database is up and at this Bastion's schema, and nothing waits in the spool
        (rows still in the mailbox are written on the next turn)."""
        return self.stats.db_up and self._schema_ok and self._pending == 0

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "db_up": s.db_up,
            "received": s.received,
            "written": s.written,
            "spooled": s.spooled,
            "replayed": s.replayed,
            "pending_in_spool": self._pending,
            "rejected": s.rejected,
            "unusable": s.unusable,
            "errors": s.errors,
            "dropped": self._dropped,
            "outages": s.outages,
            "queued": self._mailbox.qsize(),
        }

    @property
    def dropped(self) -> int:
        return self._dropped

    def _turn(self, *, wait_s: float, replay: bool = True) -> bool:
        """One batch: store changes and messages, written or spooled. True if it had any.

        The store is read first (its rows can be read again if this turn fails); message rows
        are kept in ``_carry`` until written or spooled, so a failed turn loses none of them.
        """
        with self._idle:
            generation = self._asked_gen
        cursor, tail_rows = self._cursor, []
        if self._tail is not None:
            tail_rows, cursor = self._tail.read(self._cursor, self.params.batch_size)
        taken = self._take(wait_s)
        fresh = self._rows(taken)
        self._carry.extend(fresh)
        rows = [*self._carry, *tail_rows]
        busy = bool(rows) or cursor != self._cursor
        if busy:
            if self.tap is not None:
                self.tap([*fresh, *tail_rows])
            self._deliver(rows, cursor)
        self._carry = []
        if replay:
            self._replay()
            self._maybe_prune()
        quiet = not busy and self._mailbox.empty() and self.caught_up()
        if quiet:
            with self._idle:
                self._quiet_gen = max(self._quiet_gen, generation)
                self._idle.notify_all()
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
        rows: list[Row] = []
        for message in messages:
            try:
                rows.extend(rows_of([message], self._snapshot_due))
            except Exception as err:  # a message no row can be made of: logged, not fatal
                self.stats.unusable += 1
                log.error(
                    "history_message_unusable", message=type(message).__name__, error=str(err)
                )
        return rows

    def _snapshot_due(self, ts: int) -> bool:
        every_ms = int(self.params.account_snapshot_interval_s * 1000)
        if self._snapshot_at is not None and ts - self._snapshot_at < every_ms:
            return False
        self._snapshot_at = ts
        return True

    # ------------------------------------------------------------------ writing

    def _deliver(self, rows: list[Row], cursor: Cursor) -> None:
        if self._halt.is_set() or self._spooling():
            self._to_spool(rows, cursor)
            return
        try:
            self._write(rows)
        except Exception as err:
            if _transient(err):
                self._went_down(err)
            else:
                self._retry_at = 0.0  # the replay sorts the refused rows out, one by one
            self._to_spool(rows, cursor)
            return
        self.stats.written += len(rows)
        if cursor != self._cursor:
            self._spool.set_cursor(cursor.to_dict())
            self._cursor = cursor

    def _spooling(self) -> bool:
        return not self.stats.db_up or not self._schema_ok or self._pending > 0

    def _to_spool(self, rows: list[Row], cursor: Cursor) -> None:
        self._spool.append(rows, cursor.to_dict())
        self._cursor = cursor
        self._pending = self._spool.pending()
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
        """Write the spool oldest first (a few batches per turn) once the retry is due."""
        if self._halt.is_set() or (self._pending == 0 and self.stats.db_up and self._schema_ok):
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
                    if _transient(err):
                        raise
                    self._write_one_by_one(batch)
                self._spool.remove_through(batch[-1][0])
                self._pending = self._spool.pending()
                replayed += len(batch)
        except Exception as err:
            if not _transient(err):
                raise  # the spool itself failed: the run loop logs it and tries again
            self._went_down(err)
        finally:
            if replayed:
                self.stats.replayed += replayed
                log.info("history_replayed", rows=replayed, pending=self._pending)

    def _write_one_by_one(self, batch: list[tuple[int, Row]]) -> None:
        for seq, row in batch:
            try:
                self._write([row])
            except Exception as err:
                if _transient(err):
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
        configured = settings.paper_database_url if mode == "paper" else settings.database_url
        if configured is None and path is not None and not path.exists():
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
