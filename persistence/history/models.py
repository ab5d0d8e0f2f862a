"""The history database's tables as SQLAlchemy 2 declarative models.

What Bastion did and why, kept for reports and audits; the position store stays the source of
truth for trading. Conventions:

- Times are ``BIGINT`` milliseconds since the Unix epoch (UTC); prices, quantities and money are
  exact decimals (:class:`~persistence.history.types.Money`); enumerations (side, status, kind)
  are stored as their lowercase string values so a new value never needs a migration.
- Natural keys carry unique constraints so the writer can replay after a crash without
  duplicating rows: ``orders.client_id``, ``order_events (client_id, seq)``, ``fills.fill_id``,
  ``trades.position_id``, ``system_events.event_id``, ``account_snapshots.at`` and
  ``candles (symbol, timeframe, time)``.
- Only ``order_events.client_id`` is a foreign key. Fills are recorded even when the order they
  belong to is not (yet) in this database (adopted positions, a writer that fell behind).
- Constraint and index names follow :data:`NAMING_CONVENTION`, so the hand-written migrations
  name everything exactly as the models do.

The schema is created only by the migrations in ``migrations/``: a change here needs a new
revision there (``tests/persistence/test_history_schema.py`` compares the two).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from persistence.history.types import Id, Json, Money

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SYMBOL = 64  # ccxt unified symbols ("BTC/USD:USD") with room to spare
SHORT = 32  # enumeration values: side, role, status, kind
IDENT = 128  # client order ids, exchange ids, position ids, event ids


class Origin(StrEnum):
    """How a round trip began: a strategy's entry, exposure Bastion found and adopted, or an
    operator's manual position."""

    STRATEGY = "strategy"
    ADOPTED = "adopted"
    MANUAL = "manual"


class EventKind(StrEnum):
    """The kinds of :class:`SystemEvent`; new kinds need no migration (stored as text)."""

    SIGNAL = "signal"
    ALLOCATOR_DECISION = "allocator_decision"
    RISK_DECISION = "risk_decision"
    KILL_SWITCH = "kill_switch"
    RECONCILIATION_ACTION = "reconciliation_action"
    LADDER_RUNG = "ladder_rung"
    OPERATOR_COMMAND = "operator_command"
    ALERT = "alert"


class Base(DeclarativeBase):
    """Declarative base with the shared metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {Decimal: Money(), dict[str, Any]: Json}


class Candle(Base):
    """One closed OHLCV bar; ``time`` is the bar's open time in ms."""

    __tablename__ = "candles"

    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    time: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[Decimal]
    high: Mapped[Decimal]
    low: Mapped[Decimal]
    close: Mapped[Decimal]
    volume: Mapped[Decimal]

    __table_args__ = (Index(None, "time"),)


class OrderRecord(Base):
    """Every order Bastion sent, with its latest known state."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(IDENT), unique=True)
    exchange_id: Mapped[str | None] = mapped_column(String(IDENT))
    position_id: Mapped[str | None] = mapped_column(String(IDENT), index=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL))
    role: Mapped[str] = mapped_column(String(SHORT))
    type: Mapped[str] = mapped_column(String(SHORT))
    side: Mapped[str] = mapped_column(String(SHORT))
    qty: Mapped[Decimal]
    price: Mapped[Decimal | None]
    trigger_price: Mapped[Decimal | None]
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(SHORT))
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    events: Mapped[list[OrderEvent]] = relationship(
        back_populates="order", order_by="OrderEvent.id", passive_deletes=True
    )

    __table_args__ = (Index(None, "symbol", "created_at"),)


class OrderEvent(Base):
    """One step in an order's status history (sent, acknowledged, filled, cancelled, ...);
    ``(client_id, seq)`` is its replay key."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(
        String(IDENT), ForeignKey("orders.client_id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)  # the event's ordinal within its order, from 1
    status: Mapped[str] = mapped_column(String(SHORT))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[int] = mapped_column(BigInteger, index=True)

    order: Mapped[OrderRecord] = relationship(back_populates="events")

    __table_args__ = (
        Index(None, "client_id", "at"),
        Index(None, "client_id", "seq", unique=True),
    )


class FillRecord(Base):
    """One execution reported by the venue; ``fill_id`` is the venue's trade id."""

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    fill_id: Mapped[str] = mapped_column(String(IDENT), unique=True)
    client_id: Mapped[str | None] = mapped_column(String(IDENT), index=True)
    position_id: Mapped[str | None] = mapped_column(String(IDENT), index=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL))
    side: Mapped[str] = mapped_column(String(SHORT))
    qty: Mapped[Decimal]
    price: Mapped[Decimal]
    fee: Mapped[Decimal]
    fee_currency: Mapped[str | None] = mapped_column(String(SHORT))
    ts: Mapped[int] = mapped_column(BigInteger, index=True)

    __table_args__ = (Index(None, "symbol", "ts"),)


class Trade(Base):
    """A round trip of one managed position, from first entry fill to flat.

    Open trades have no ``closed_at``/``exit_price``; ``realized_pnl`` is net of ``fees`` and
    ``funding``; ``r_multiple`` is ``realized_pnl`` over the risk taken at entry (None when the
    position was adopted and had no planned risk).
    """

    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    position_id: Mapped[str] = mapped_column(String(IDENT), unique=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL))
    side: Mapped[str] = mapped_column(String(SHORT))
    strategy: Mapped[str | None] = mapped_column(String(IDENT))
    origin: Mapped[str] = mapped_column(String(SHORT))
    opened_at: Mapped[int] = mapped_column(BigInteger, index=True)
    closed_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    qty: Mapped[Decimal]
    entry_price: Mapped[Decimal]
    exit_price: Mapped[Decimal | None]
    fees: Mapped[Decimal] = mapped_column(default=Decimal(0))
    funding: Mapped[Decimal] = mapped_column(default=Decimal(0))
    realized_pnl: Mapped[Decimal | None]
    r_multiple: Mapped[Decimal | None]
    entry_reason: Mapped[str | None] = mapped_column(Text)
    exit_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "symbol", "closed_at"),)

    @validates("origin")
    def _check_origin(self, _key: str, value: str) -> str:
        return Origin(value).value


class SystemEvent(Base):
    """The typed audit trail: one decision or action, its reason and who or what took it.

    ``event_id`` is chosen by the producer (deterministic for a given decision) so a replay
    after a crash is rejected by the unique constraint instead of recorded twice. ``source`` is
    the actor or tool that acted; ``who`` the operator identity for operator commands.
    """

    __tablename__ = "system_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(IDENT), unique=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(SHORT))
    reason_code: Mapped[str | None] = mapped_column(String(IDENT))
    symbol: Mapped[str | None] = mapped_column(String(SYMBOL), index=True)
    position_id: Mapped[str | None] = mapped_column(String(IDENT), index=True)
    source: Mapped[str | None] = mapped_column(String(IDENT))
    who: Mapped[str | None] = mapped_column(String(IDENT))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index(None, "kind", "at"),)

    @validates("kind")
    def _check_kind(self, _key: str, value: str) -> str:
        return EventKind(value).value


class AccountSnapshot(Base):
    """The account at one moment: equity, margin and exposure (sum of |notional|)."""

    __tablename__ = "account_snapshots"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True, unique=True)  # the replay key
    equity: Mapped[Decimal]
    available_margin: Mapped[Decimal]
    used_margin: Mapped[Decimal]
    unrealized_pnl: Mapped[Decimal]
    exposure: Mapped[Decimal]


__all__ = [
    "NAMING_CONVENTION",
    "AccountSnapshot",
    "Base",
    "Candle",
    "EventKind",
    "FillRecord",
    "OrderEvent",
    "OrderRecord",
    "Origin",
    "SystemEvent",
    "Trade",
]
