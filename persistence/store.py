"""The position store: WAL-mode SQLite, one writer, every change in one transaction.

- ``journal_mode=WAL``, ``synchronous=FULL``, ``busy_timeout``, ``BEGIN IMMEDIATE`` (rule 7).
- A position's new state, its append-only transition row, the order journal rows it writes ahead
  and the fills it applied commit together or not at all; versions are checked optimistically.
- An exclusive ``flock`` on ``<db>.lock`` keeps a second Bastion out; it is released by the kernel
  when the process dies, so a ``kill -9`` never leaves a stale lock behind.
- A corrupt file, a store from a newer schema or a locked store stop startup with a clear message.
  Nothing here ever deletes or overwrites a database file.

If :meth:`PositionStore.commit` raises, the caller's in-memory position is ahead of the store:
``discard()`` it and :meth:`PositionStore.load` it again before doing anything else with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from domain.errors import (
    StaleVersion,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreSchemaTooNew,
    SymbolHasLivePosition,
)
from domain.models import Order, OrderRole, OrderStatus, OrderType, OrderUpdate, Side
from domain.position import Change, Position, parse_client_order_id
from domain.position_table import TERMINAL, State
from persistence.codec import position_from_record, position_json
from persistence.schema import MIGRATIONS, latest_version

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
SCRATCH_BATCH = 1000  # transactions a scratch store commits together


# what json.dumps(value, sort_keys=True, separators=(",", ":"), default=str) builds per call,
# made once (encoding keeps no state between calls); the C encoder directly where there is one
# (JSONEncoder.encode builds one per call), without the circular-reference check the store's
# plain values never need
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_C_ENCODER = (
    None
    if json.encoder.c_make_encoder is None
    else json.encoder.c_make_encoder(
        None, str, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )
)


def _dump(value: Any) -> str:
    if _C_ENCODER is not None:
        return "".join(_C_ENCODER(value, 0))
    return _ENCODER.encode(value)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


class _Executes(Protocol):
    """What a transaction's body executes its statements on."""

    def execute(self, sql: str, parameters: Any = ..., /) -> sqlite3.Cursor: ...


class _Recorder:
    """A scratch store's connection inside its open batch: every statement a transaction
    executes is recorded, so that the batch can be rebuilt without a transaction that failed
    half way (see :meth:`PositionStore.open`)."""

    __slots__ = ("_conn", "log")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.log: list[tuple[str, Any]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.log.append((sql, parameters))
        return self._conn.execute(sql, parameters)


class _Transaction:
    """The context manager of :meth:`PositionStore._tx` (one per store, reused)."""

    __slots__ = ("_store",)

    def __init__(self, store: PositionStore) -> None:
        self._store = store

    def __enter__(self) -> _Executes:
        return self._store._begin()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._store._end(kind is None)


class PositionStore:
    """Persistence of positions, the order journal, fills and the transition log."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, lock_fd: int | None, *, batch: int = 0
    ) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd
        self.readonly = lock_fd is None
        self._batch = batch  # scratch store: transactions committed together (0: each alone)
        self._batched = 0  # transactions done since the last commit
        self._transaction = _Transaction(self)
        self._recorder = _Recorder(conn)  # a scratch batch's statements so far
        self._started = 0  # where the open transaction's statements begin in it
        self._position_seq: int | None = None  # the persisted counter, once read (one writer)

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls, path: Path | str, *, readonly: bool = False, durable: bool = True
    ) -> PositionStore:
        """Open (creating if absent) and check the store; raise a StoreError subclass if unsafe.

        ``readonly`` opens without the writer lock, for tools that only look (``status``).
        ``durable=False`` is for a scratch store whose loss in a crash costs nothing, such as a
        backtest's: it commits without waiting for the disk (``synchronous = OFF``), and its
        transactions go into a batch committed every ``SCRATCH_BATCH`` transactions (and by
        :meth:`flush` and :meth:`close`). A transaction still applies whole or not at all: one
        that fails half way rolls the batch back, and the statements of the batch's earlier
        transactions, which it records, run again. This connection reads what it wrote; other
        readers see it once committed.
        """
        path = Path(path)
        if readonly and not path.exists():
            raise StoreError(f"position store {path} does not exist")
        _check_header(path)
        lock_fd = None if readonly else _acquire_lock(path)
        try:
            conn = _connect(path, readonly=readonly, durable=durable)
            try:
                _check_integrity(conn, path)
                _migrate(conn, path, readonly=readonly)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(conn, path, lock_fd, batch=0 if durable else SCRATCH_BATCH)

    def flush(self) -> None:
        """Commit a scratch store's open batch, for other readers (no-op when none is open)."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._batched = 0
        self._recorder.log.clear()

    def close(self) -> None:
        if self._batch and not self.readonly:
            self.flush()
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> PositionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def pragma(self, name: str) -> Any:
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    # ----------------------------------------------------------------- writing

    def _tx(self) -> _Transaction:
        """``with self._tx() as db``: one transaction, committed whole or rolled back whole."""
        if self.readonly:
            raise StoreError(f"position store {self.path} is open read-only")
        return self._transaction

    def _begin(self) -> _Executes:
        conn = self._conn
        if not self._batch:
            conn.execute("BEGIN IMMEDIATE")
            return conn
        # a scratch store's transaction: its statements recorded in the open batch
        recorder = self._recorder
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
            recorder.log.clear()
        self._started = len(recorder.log)
        return recorder

    def _end(self, ok: bool) -> None:
        conn = self._conn
        if not self._batch:
            conn.execute("COMMIT" if ok else "ROLLBACK")
            return
        if not conn.in_transaction:  # SQLite itself rolled the whole batch back (I/O, full)
            self._batched = 0
            raise StoreError(
                f"scratch position store {self.path}: the database rolled back its batch of "
                "transactions after an error; what was written since its last commit is lost"
            )
        if not ok:
            self._rebuild()
            return
        self._batched += 1
        if self._batched >= self._batch:
            self.flush()

    def _rebuild(self) -> None:
        """Undo a scratch transaction that failed half way: roll the batch back and run the
        statements of the transactions before it again (the same statements on the same
        database give the same rows, row ids included)."""
        conn, log = self._conn, self._recorder.log
        del log[self._started :]
        conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, parameters in log:
                conn.execute(sql, parameters)
        except sqlite3.Error as err:
            raise StoreError(
                f"scratch position store {self.path}: its batch could not be rebuilt after a "
                f"failed transaction ({err})"
            ) from err

    def commit(self, position: Position, change: Change) -> int:
        """Persist ``change`` (already applied to ``position``); returns its transition seq."""
        if (change.position_id, change.version, change.dest.value) != (
            position.id,
            position.version,
            position.state,
        ):
            raise StoreError(
                f"change v{change.version} ({change.dest.value}) of {change.position_id} does "
                f"not match position {position.id} v{position.version} ({position.state})"
            )
        record = position_json(position)
        terminal = int(position.current in TERMINAL)
        with self._tx() as db:
            if change.version == 1:
                self._refuse_second_live_position(db, position)
                db.execute(
                    "INSERT INTO positions (id, symbol, state, version, terminal, record, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        position.id,
                        position.symbol,
                        position.state,
                        position.version,
                        terminal,
                        record,
                        position.created_at,
                        change.at,
                    ),
                )
            else:
                cur = db.execute(
                    "UPDATE positions SET state = ?, version = ?, terminal = ?, record = ?, "
                    "updated_at = ? WHERE id = ? AND version = ?",
                    (
                        position.state,
                        position.version,
                        terminal,
                        record,
                        change.at,
                        position.id,
                        change.version - 1,
                    ),
                )
                if cur.rowcount != 1:
                    raise StaleVersion(
                        f"position {position.id}: stored version is not {change.version - 1}"
                    )
            seq = db.execute(
                "INSERT INTO transitions (position_id, version, trigger, source, dest, at, "
                "detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    position.id,
                    change.version,
                    change.trigger,
                    change.source.value if change.source else None,
                    change.dest.value,
                    change.at,
                    _dump(change.detail) if change.detail else "{}",
                ),
            ).lastrowid
            assert seq is not None
            for order in change.orders:
                self._insert_order(db, order, seq, change.at)
            for update in change.order_updates:
                self._update_order(db, update, seq, change.at)
            for fill in change.fills:
                db.execute(
                    "INSERT INTO fills (fill_id, position_id, client_id, role, qty, price, fee, "
                    "ts, transition_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fill.fill_id,
                        position.id,
                        fill.client_id,
                        fill.role.value,
                        str(fill.qty),
                        str(fill.price),
                        str(fill.fee),
                        fill.ts,
                        seq,
                    ),
                )
        return seq

    @staticmethod
    def _refuse_second_live_position(db: _Executes, position: Position) -> None:
        """Rule 5, with a clear message; the unique index backs it up."""
        row = db.execute(
            "SELECT id FROM positions WHERE symbol = ? AND terminal = 0", (position.symbol,)
        ).fetchone()
        if row is not None:
            raise SymbolHasLivePosition(
                f"{position.symbol} already has a live position {row[0]}; "
                f"position {position.id} was not recorded"
            )

    def update_order(self, update: OrderUpdate, *, at: int) -> None:
        """A journal-only status change (an entry or take-profit ack, a timeout -> unknown)."""
        with self._tx() as db:
            self._update_order(db, update, None, at)

    @staticmethod
    def _insert_order(db: _Executes, order: Order, seq: int, at: int) -> None:
        if order.status is not OrderStatus.SENDING:
            raise StoreError(f"order {order.client_id} must be written ahead as 'sending'")
        if order.position_id is None:
            raise StoreError(f"order {order.client_id} has no position")
        params = {
            "symbol": order.symbol,
            "type": order.type.value,
            "side": order.side.value,
            "qty": str(order.qty),
            "price": _dec(order.price),
            "trigger_price": _dec(order.trigger_price),
            "reduce_only": order.reduce_only,
            "client_id": order.client_id,
        }
        db.execute(
            "INSERT INTO orders (client_id, position_id, symbol, role, type, side, qty, price, "
            "trigger_price, reduce_only, status, params, transition_seq, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.client_id,
                order.position_id,
                order.symbol,
                order.role.value,
                order.type.value,
                order.side.value,
                str(order.qty),
                _dec(order.price),
                _dec(order.trigger_price),
                int(order.reduce_only),
                order.status.value,
                _dump(params),
                seq,
                at,
                at,
            ),
        )
        db.execute(
            "INSERT INTO order_events (client_id, status, transition_seq, at) VALUES (?, ?, ?, ?)",
            (order.client_id, order.status.value, seq, at),
        )

    @staticmethod
    def _update_order(db: _Executes, update: OrderUpdate, seq: int | None, at: int) -> None:
        cur = db.execute(
            "UPDATE orders SET status = ?, exchange_id = COALESCE(?, exchange_id), "
            "reason = ?, updated_at = ? WHERE client_id = ?",
            (update.status.value, update.exchange_id, update.reason, at, update.client_id),
        )
        if cur.rowcount != 1:
            raise StoreError(f"order {update.client_id} is not in the journal")
        db.execute(
            "INSERT INTO order_events (client_id, status, exchange_id, reason, transition_seq, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (update.client_id, update.status.value, update.exchange_id, update.reason, seq, at),
        )

    def next_position_id(self, at: int) -> str:
        """A new position id: base-36 seconds of ``at`` plus a persisted counter.

        The time part keeps ids unique even if a store were ever replaced by an empty one, so
        client order ids never repeat at the venue.
        """
        with self._tx() as db:
            seq = self._position_seq
            if seq is None:  # read once: this store is the file's only writer (the lock)
                row = db.execute("SELECT value FROM kv WHERE key = 'position_seq'").fetchone()
                seq = int(row[0]) if row else 0
            seq += 1
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES ('position_seq', ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (str(seq), at),
            )
        self._position_seq = seq
        return f"{_b36(at // 1000)}{_b36(seq).rjust(3, '0')}"

    def set_value(self, key: str, value: Any, *, at: int) -> None:
        """Persist a small named value (kill-switch latch, last reconciliation, ...)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, _dump(value), at),
            )

    def get_value(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ----------------------------------------------------------------- reading

    def load_active(self) -> list[Position]:
        """Every non-terminal position, rebuilt at its persisted state, oldest first."""
        rows = self._conn.execute(
            "SELECT record FROM positions WHERE terminal = 0 ORDER BY created_at, id"
        ).fetchall()
        return [position_from_record(json.loads(r[0])) for r in rows]

    def load(self, position_id: str) -> Position:
        row = self._conn.execute(
            "SELECT record FROM positions WHERE id = ?", (position_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"position {position_id} is not in the store")
        return position_from_record(json.loads(row[0]))

    def transitions(self, position_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT seq, position_id, version, trigger, source, dest, at, detail FROM transitions"
        args: tuple[Any, ...] = ()
        if position_id is not None:
            sql += " WHERE position_id = ?"
            args = (position_id,)
        rows = self._conn.execute(sql + " ORDER BY seq", args).fetchall()
        keys = ("seq", "position_id", "version", "trigger", "source", "dest", "at", "detail")
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["detail"] = json.loads(item["detail"])
            out.append(item)
        return out

    def orders(
        self,
        *,
        statuses: Iterable[OrderStatus] | None = None,
        position_id: str | None = None,
        transition_seq: int | None = None,
        client_id: str | None = None,
    ) -> list[Order]:
        """Journal rows, filtered; ``statuses={SENDING, UNKNOWN}`` is what recovery resolves."""
        clauses, args = [], []
        if statuses is not None:
            wanted = [s.value for s in statuses]
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        if position_id is not None:
            clauses.append("position_id = ?")
            args.append(position_id)
        if transition_seq is not None:
            clauses.append("transition_seq = ?")
            args.append(transition_seq)
        if client_id is not None:
            clauses.append("client_id = ?")
            args.append(client_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            "SELECT client_id, symbol, role, type, side, qty, reduce_only, status, price, "
            f"trigger_price, exchange_id, position_id FROM orders{where} ORDER BY created_at, "
            "client_id",
            args,
        ).fetchall()
        return [
            Order(
                client_id=r[0],
                symbol=r[1],
                role=OrderRole(r[2]),
                type=OrderType(r[3]),
                side=Side(r[4]),
                qty=Decimal(r[5]),
                reduce_only=bool(r[6]),
                status=OrderStatus(r[7]),
                price=Decimal(r[8]) if r[8] is not None else None,
                trigger_price=Decimal(r[9]) if r[9] is not None else None,
                exchange_id=r[10],
                position_id=r[11],
            )
            for r in rows
        ]

    def client_ids(self, *, position_id: str, statuses: Iterable[OrderStatus]) -> list[str]:
        """Client ids of a position's journaled orders in ``statuses``, in journal order (what
        :meth:`orders` would give, without building the orders)."""
        wanted = [s.value for s in statuses]
        rows = self._conn.execute(
            f"SELECT client_id FROM orders WHERE status IN ({', '.join('?' * len(wanted))}) "
            "AND position_id = ? ORDER BY created_at, client_id",
            (*wanted, position_id),
        ).fetchall()
        return [r[0] for r in rows]

    def order_status(self, client_id: str) -> OrderStatus | None:
        row = self._conn.execute(
            "SELECT status FROM orders WHERE client_id = ?", (client_id,)
        ).fetchone()
        return None if row is None else OrderStatus(row[0])

    def exchange_id(self, client_id: str) -> str | None:
        """The venue's id of a journaled order, once an acknowledgement carried it."""
        row = self._conn.execute(
            "SELECT exchange_id FROM orders WHERE client_id = ?", (client_id,)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def fill_ids(self, position_id: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT fill_id FROM fills WHERE position_id = ?", (position_id,)
        ).fetchall()
        return {r[0] for r in rows}

    def count(self, table: str) -> int:
        if table not in {"positions", "transitions", "orders", "order_events", "fills", "kv"}:
            raise ValueError(f"unknown table {table}")
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def position_for_client_id(self, client_id: str) -> str | None:
        """The position an order belongs to: from the journal, else from the id's own shape."""
        row = self._conn.execute(
            "SELECT position_id FROM orders WHERE client_id = ?", (client_id,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        parsed = parse_client_order_id(client_id)
        return parsed[0] if parsed else None

    def states(self) -> dict[str, State]:
        rows = self._conn.execute("SELECT id, state FROM positions").fetchall()
        return {r[0]: State(r[1]) for r in rows}


# --------------------------------------------------------------------- opening helpers


def _check_header(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        header = fh.read(len(SQLITE_MAGIC))
    if header != SQLITE_MAGIC:
        raise StoreCorrupt(
            f"position store {path} is not an SQLite database (bad header); it was left "
            "untouched. Restore it from a backup or move it aside to start with an empty store."
        )


def _acquire_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreLocked(
            f"position store {path} is in use by another running Bastion (pid {holder}); "
            "stop it first, or point this one at another data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _connect(path: Path, *, readonly: bool, durable: bool = True) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"position store {path}: could not enable WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
        if not durable:  # a scratch store's temporary pages stay in memory
            conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"position store {path} cannot be opened: {exc}") from None
    return conn


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"position store {path} is corrupt: {exc}") from None
    if result != "ok":
        raise StoreCorrupt(f"position store {path} failed its integrity check: {result}")


def _migrate(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    target = latest_version()
    if current > target:
        raise StoreSchemaTooNew(
            f"position store {path} has schema version {current}, newer than this Bastion "
            f"understands ({target}); upgrade Bastion, it was left untouched"
        )
    if current == target:
        return
    if readonly:
        raise StoreError(
            f"position store {path} has schema version {current}, expected {target}; "
            "start the service once to upgrade it"
        )
    has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
    if current == 0 and has_tables:
        raise StoreError(
            f"{path} is an SQLite database but not a Bastion position store (no schema "
            "version); it was left untouched"
        )
    if has_tables:
        backup = path.with_name(f"{path.name}.v{current}.bak")
        if not backup.exists():
            conn.execute("PRAGMA wal_checkpoint(FULL)")
            shutil.copy2(path, backup)
    for version in range(current + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


__all__ = ["PositionStore", "State"]
