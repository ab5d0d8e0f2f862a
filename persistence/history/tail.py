"""Read the position store's new journal entries, fills and transitions as history rows.

The position store is where orders, fills and position changes are made durable before
anything else happens (ARCHITECTURE rule 1); the history writer copies them from there rather
than from messages, so a crash can delay history but never lose it: the cursor (the last
order-event and transition sequence numbers handed on) only moves once the rows are in the
history database or in the spool.

The tail opens its own read-only connection (WAL readers never block the writer) and never
builds :class:`~domain.position.Position` objects, so it stays off the shared state machine.
Each batch gives:

- an ``orders`` row (the order as it is now) and an ``order_events`` row per journal event;
- a ``fills`` row per fill of the transitions read;
- a ``trades`` row per position those transitions touched, once it has an entry fill
  (open: no exit; closed: exit price, realized PnL net of fees, R multiple).

A store replaced by a new file (sequence numbers below the cursor) is read from the start;
the history database's natural keys make that harmless.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.models import OrderRole, PositionSide
from domain.position_data import round_trip_result
from domain.position_table import State
from persistence.codec import data_from_record
from persistence.history.rows import Row, money

ENTRY = OrderRole.ENTRY.value


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far the store has been handed on: the last order-event and transition seq, and
    which store they belong to (its first transition, see :func:`_identity`)."""

    order_event: int = 0
    transition: int = 0
    store: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"order_event": self.order_event, "transition": self.transition, "store": self.store}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Cursor:
        return cls(int(raw.get("order_event", 0)), int(raw.get("transition", 0)), raw.get("store"))


class StoreTail:
    """Batches of history rows from the position store at ``path``, after a cursor."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"file:{self.path.as_posix()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=5000")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def read(self, cursor: Cursor, limit: int) -> tuple[list[Row], Cursor]:
        """Rows for up to ``limit`` order events and ``limit`` transitions after ``cursor``."""
        db = self._db()
        db.execute("BEGIN")  # one snapshot for the whole batch
        try:
            cursor = self._restart_if_replaced(db, cursor)
            events, last_event = self._order_rows(db, cursor.order_event, limit)
            changes, last_transition = self._position_rows(db, cursor.transition, limit)
        finally:
            db.execute("COMMIT")
        return events + changes, Cursor(last_event, last_transition, cursor.store)

    @staticmethod
    def _restart_if_replaced(db: sqlite3.Connection, cursor: Cursor) -> Cursor:
        """``cursor`` for this store, or the start of it if the cursor was another store's (the
        file was replaced or restored from a backup)."""
        identity = _identity(db)
        if cursor.store is not None and cursor.store != identity:
            return Cursor(store=identity)
        newest_event = db.execute("SELECT coalesce(max(seq), 0) FROM order_events").fetchone()[0]
        newest_change = db.execute("SELECT coalesce(max(seq), 0) FROM transitions").fetchone()[0]
        if newest_event < cursor.order_event or newest_change < cursor.transition:
            return Cursor(store=identity)
        return Cursor(cursor.order_event, cursor.transition, identity)

    @staticmethod
    def _order_rows(db: sqlite3.Connection, after: int, limit: int) -> tuple[list[Row], int]:
        found = db.execute(
            "SELECT e.seq, e.client_id, e.status, e.reason, e.at, o.exchange_id, o.position_id,"
            " o.symbol, o.role, o.type, o.side, o.qty, o.price, o.trigger_price, o.reduce_only,"
            " o.status, o.created_at, o.updated_at FROM order_events e"
            " JOIN orders o ON o.client_id = e.client_id WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
            (after, limit),
        ).fetchall()
        if not found:
            return [], after
        ordinals = _ordinals(db, {r[1] for r in found}, found[0][0])
        rows: list[Row] = []
        for _seq, client_id, status, reason, at, *order in found:
            exchange_id, position_id, symbol, role, type_, side, qty, price, trigger = order[:9]
            reduce_only, order_status, created_at, updated_at = order[9:]
            ordinals[client_id] += 1
            rows.append(
                Row(
                    "orders",
                    {
                        "client_id": client_id,
                        "exchange_id": exchange_id,
                        "position_id": position_id,
                        "symbol": symbol,
                        "role": role,
                        "type": type_,
                        "side": side,
                        "qty": qty,
                        "price": price,
                        "trigger_price": trigger,
                        "reduce_only": bool(reduce_only),
                        "status": order_status,
                        "created_at": created_at,
                        "updated_at": updated_at,
                    },
                )
            )
            rows.append(
                Row(
                    "order_events",
                    {
                        "client_id": client_id,
                        "seq": ordinals[client_id],
                        "status": status,
                        "reason": reason or None,
                        "at": at,
                    },
                )
            )
        return rows, found[-1][0]

    def _position_rows(
        self, db: sqlite3.Connection, after: int, limit: int
    ) -> tuple[list[Row], int]:
        found = db.execute(
            "SELECT seq, position_id, trigger FROM transitions WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        if not found:
            return [], after
        last = found[-1][0]
        touched: dict[str, str] = {}
        for _seq, position_id, trigger in found:
            touched.pop(position_id, None)
            touched[position_id] = trigger  # ordered by each position's latest change
        records = {
            pid: json.loads(record)
            for pid, record in db.execute(
                f"SELECT id, record FROM positions WHERE id IN ({_marks(touched)})", list(touched)
            )
        }
        rows = self._fill_rows(db, after, last, records)
        opened = _first_entry_fill(db, touched)
        for position_id, trigger in touched.items():
            trade = _trade_row(records[position_id], opened.get(position_id), trigger)
            if trade is not None:
                rows.append(trade)
        return rows, last

    @staticmethod
    def _fill_rows(
        db: sqlite3.Connection, after: int, last: int, records: dict[str, dict[str, Any]]
    ) -> list[Row]:
        found = db.execute(
            "SELECT f.fill_id, f.position_id, f.client_id, f.role, f.qty, f.price, f.fee, f.ts,"
            " o.side, p.record FROM fills f JOIN positions p ON p.id = f.position_id"
            " LEFT JOIN orders o ON o.client_id = f.client_id"
            " WHERE f.transition_seq > ? AND f.transition_seq <= ? ORDER BY f.transition_seq",
            (after, last),
        ).fetchall()
        rows = []
        for fill_id, position_id, client_id, role, qty, price, fee, ts, order_side, record in found:
            raw = records.get(position_id) or json.loads(record)
            side = order_side
            if side is None:  # a fill without a journal order (adopted exposure)
                entry = PositionSide(raw["side"]).entry_side
                side = (entry if role == ENTRY else entry.opposite).value
            rows.append(
                Row(
                    "fills",
                    {
                        "fill_id": fill_id,
                        "client_id": client_id,
                        "position_id": position_id,
                        "symbol": raw["symbol"],
                        "side": side,
                        "qty": qty,
                        "price": price,
                        "fee": fee,
                        "fee_currency": None,
                        "ts": ts,
                    },
                )
            )
        return rows


def _identity(db: sqlite3.Connection) -> str | None:
    """A store's identity: its first transition (position id and time), None while empty.

    Position ids are made from the time they were opened, so two stores do not share a first
    transition in practice, and the transition log is append-only, so it never changes.
    """
    first = db.execute("SELECT position_id, at FROM transitions ORDER BY seq LIMIT 1").fetchone()
    return f"{first[0]}@{first[1]}" if first else None


def _marks(items: Iterable[object]) -> str:
    return ", ".join("?" for _ in items)


def _ordinals(db: sqlite3.Connection, client_ids: set[str], first_seq: int) -> dict[str, int]:
    """How many events each order had before ``first_seq`` (one scan for the whole batch)."""
    counts = dict.fromkeys(client_ids, 0)
    ids = list(client_ids)
    for client_id, count in db.execute(
        f"SELECT client_id, count(*) FROM order_events WHERE seq < ? AND client_id IN"
        f" ({_marks(ids)}) GROUP BY client_id",
        [first_seq, *ids],
    ):
        counts[client_id] = count
    return counts


def _first_entry_fill(db: sqlite3.Connection, position_ids: dict[str, str]) -> dict[str, int]:
    ids = list(position_ids)
    return dict(
        db.execute(
            f"SELECT position_id, min(ts) FROM fills WHERE role = ? AND position_id IN"
            f" ({_marks(ids)}) GROUP BY position_id",
            [ENTRY, *ids],
        ).fetchall()
    )


def _trade_row(raw: dict[str, Any], opened_at: int | None, last_trigger: str) -> Row | None:
    """The round trip of one position record, or None before its first entry fill."""
    data = data_from_record(raw)
    if not data.entry_filled:
        return None
    closed = raw["state"] == State.CLOSED.value
    long = raw["side"] == PositionSide.LONG.value
    planned = Decimal(raw["planned_stop"]) if raw["planned_stop"] else None
    pnl, r_multiple = round_trip_result(data, long=long, planned_stop=planned)
    return Row(
        "trades",
        {
            "position_id": raw["id"],
            "symbol": raw["symbol"],
            "side": raw["side"],
            "strategy": raw["strategy"] or None,
            "origin": raw["origin"],
            "opened_at": opened_at if opened_at is not None else raw["created_at"],
            "closed_at": data.updated_at if closed else None,
            "qty": money(data.entry_filled),
            "entry_price": money(data.avg_entry_price),
            "exit_price": money(data.avg_exit_price),
            "fees": money(data.fees),
            "funding": "0",
            "realized_pnl": money(pnl) if closed else None,
            "r_multiple": money(r_multiple) if closed and r_multiple is not None else None,
            "entry_reason": raw["strategy"] or raw["origin"],
            "exit_reason": last_trigger if closed else None,
        },
    )


__all__ = ["Cursor", "StoreTail"]
