"""Rows on their way to the history database, and how each table takes a replayed one.

A :class:`Row` is one table's column values, JSON-native (money as decimal strings, times as
ms), so the same object can be written to the database, spooled to a local file while the
database is down, and replayed from there unchanged.

:func:`write_rows` writes a batch in one transaction. Every table has a natural key
(see :mod:`persistence.history.models`) and every insert names it in ``ON CONFLICT``: rows
that are facts (fills, events, candles, snapshots, order events) are ignored when already
present, rows that are states (an order's status, a trade still open) are updated. Writing the
same batch twice therefore leaves the database as writing it once: a replay after a crash or
an outage cannot duplicate anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from persistence.history.models import (
    AccountSnapshot,
    Base,
    Candle,
    FillRecord,
    OrderEvent,
    OrderRecord,
    SystemEvent,
    Trade,
)


@dataclass(frozen=True, slots=True)
class Row:
    """One row for ``table``; ``values`` are JSON-native (money as strings)."""

    table: str
    values: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps({"t": self.table, "v": self.values}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Row:
        raw = json.loads(text)
        return cls(raw["t"], raw["v"])


@dataclass(frozen=True, slots=True)
class _Policy:
    """How one table takes a row that may already be there."""

    table: Table
    key: tuple[str, ...]
    update: tuple[str, ...] = ()  # columns a newer row overwrites; empty: keep the first row


def _policy(model: type[Base], key: tuple[str, ...], update: tuple[str, ...] = ()) -> _Policy:
    table = model.__table__
    assert isinstance(table, Table)
    return _Policy(table, key, update)


# Parents before children: an order event needs its order (the only foreign key).
POLICIES: dict[str, _Policy] = {
    "orders": _policy(OrderRecord, ("client_id",), ("exchange_id", "status", "updated_at")),
    "order_events": _policy(OrderEvent, ("client_id", "seq")),
    "fills": _policy(FillRecord, ("fill_id",)),
    "trades": _policy(
        Trade,
        ("position_id",),
        (
            "closed_at",
            "qty",
            "entry_price",
            "exit_price",
            "fees",
            "funding",
            "realized_pnl",
            "r_multiple",
            "exit_reason",
        ),
    ),
    "candles": _policy(Candle, ("symbol", "timeframe", "time")),
    "system_events": _policy(SystemEvent, ("event_id",)),
    "account_snapshots": _policy(AccountSnapshot, ("at",)),
}
TABLES = tuple(POLICIES)


def money(value: Decimal | float | int | None) -> str | None:
    """A money value as a row holds it: its exact decimal string (floats via ``str``)."""
    if value is None:
        return None
    return str(value if isinstance(value, Decimal) else Decimal(str(value)))


def _grouped(rows: Sequence[Row]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows by table in :data:`POLICIES` order; for updatable tables the last row per key wins
    (one statement cannot touch a row twice on PostgreSQL, and the last is the newest)."""
    grouped: dict[str, dict[tuple[Any, ...], Mapping[str, Any]] | list[Mapping[str, Any]]] = {}
    for row in rows:
        policy = POLICIES.get(row.table)
        if policy is None:
            raise ValueError(f"no history table {row.table!r}")
        if policy.update:
            keyed = grouped.setdefault(row.table, {})
            assert isinstance(keyed, dict)
            key = tuple(row.values[k] for k in policy.key)
            keyed.pop(key, None)  # re-insert: keep the position of the newest row
            keyed[key] = row.values
        else:
            listed = grouped.setdefault(row.table, [])
            assert isinstance(listed, list)
            listed.append(row.values)
    result: dict[str, list[Mapping[str, Any]]] = {}
    for table in TABLES:
        if table in grouped:
            values = grouped[table]
            result[table] = list(values.values()) if isinstance(values, dict) else values
    return result


def write_rows(connection: Connection, rows: Sequence[Row]) -> int:
    """Write ``rows`` idempotently on ``connection`` (the caller owns the transaction); returns
    the number of rows given."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    for table, values in _grouped(rows).items():
        policy = POLICIES[table]
        statement = insert(policy.table)
        if policy.update:
            statement = statement.on_conflict_do_update(
                index_elements=list(policy.key),
                set_={name: statement.excluded[name] for name in policy.update},
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=list(policy.key))
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
        for value in values:  # an executemany needs the same columns in every row
            by_columns.setdefault(frozenset(value), []).append(dict(value))
        for same in by_columns.values():
            connection.execute(statement, same)
    return len(rows)


__all__ = ["POLICIES", "TABLES", "Row", "money", "write_rows"]
