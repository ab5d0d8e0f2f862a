"""Initial history schema: candles, orders and their events, fills, trades, audit, snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand to match persistence/history/models.py; must run on SQLite and PostgreSQL.
Column types come from persistence.history.types only; never import the models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.history.types import Id, Json, Money

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _money(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, Money(), nullable=nullable)


def _ident(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(128), nullable=nullable)


def _short(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _ms(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _id() -> sa.Column:
    return sa.Column("id", Id, primary_key=True, autoincrement=True)


def _symbol(*, nullable: bool = False) -> sa.Column:
    return sa.Column("symbol", sa.String(64), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "candles",
        _symbol(),
        sa.Column("timeframe", sa.String(8), nullable=False),
        _ms("time"),
        _money("open"),
        _money("high"),
        _money("low"),
        _money("close"),
        _money("volume"),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "time", name="pk_candles"),
    )
    op.create_index("ix_candles_time", "candles", ["time"])

    op.create_table(
        "orders",
        _id(),
        _ident("client_id", nullable=False),
        _ident("exchange_id"),
        _ident("position_id"),
        _symbol(),
        _short("role"),
        _short("type"),
        _short("side"),
        _money("qty"),
        _money("price", nullable=True),
        _money("trigger_price", nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        _short("status"),
        _ms("created_at"),
        _ms("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("client_id", name="uq_orders_client_id"),
    )
    op.create_index("ix_orders_position_id", "orders", ["position_id"])
    op.create_index("ix_orders_created_at", "orders", ["created_at"])
    op.create_index("ix_orders_symbol_created_at", "orders", ["symbol", "created_at"])

    op.create_table(
        "order_events",
        _id(),
        _ident("client_id", nullable=False),
        _short("status"),
        sa.Column("reason", sa.Text(), nullable=True),
        _ms("at"),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["orders.client_id"],
            name="fk_order_events_client_id_orders",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_order_events_at", "order_events", ["at"])
    op.create_index("ix_order_events_client_id_at", "order_events", ["client_id", "at"])

    op.create_table(
        "fills",
        _id(),
        _ident("fill_id", nullable=False),
        _ident("client_id"),
        _ident("position_id"),
        _symbol(),
        _short("side"),
        _money("qty"),
        _money("price"),
        _money("fee"),
        _short("fee_currency", nullable=True),
        _ms("ts"),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        sa.UniqueConstraint("fill_id", name="uq_fills_fill_id"),
    )
    op.create_index("ix_fills_client_id", "fills", ["client_id"])
    op.create_index("ix_fills_position_id", "fills", ["position_id"])
    op.create_index("ix_fills_ts", "fills", ["ts"])
    op.create_index("ix_fills_symbol_ts", "fills", ["symbol", "ts"])

    op.create_table(
        "trades",
        _id(),
        _ident("position_id", nullable=False),
        _symbol(),
        _short("side"),
        _ident("strategy"),
        _short("origin"),
        _ms("opened_at"),
        _ms("closed_at", nullable=True),
        _money("qty"),
        _money("entry_price"),
        _money("exit_price", nullable=True),
        _money("fees"),
        _money("funding"),
        _money("realized_pnl", nullable=True),
        _money("r_multiple", nullable=True),
        sa.Column("entry_reason", sa.Text(), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        sa.UniqueConstraint("position_id", name="uq_trades_position_id"),
    )
    op.create_index("ix_trades_opened_at", "trades", ["opened_at"])
    op.create_index("ix_trades_closed_at", "trades", ["closed_at"])
    op.create_index("ix_trades_symbol_closed_at", "trades", ["symbol", "closed_at"])

    op.create_table(
        "system_events",
        _id(),
        _ident("event_id", nullable=False),
        _ms("at"),
        _short("kind"),
        _ident("reason_code"),
        _symbol(nullable=True),
        _ident("position_id"),
        _ident("source"),
        _ident("who"),
        sa.Column("payload", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_system_events"),
        sa.UniqueConstraint("event_id", name="uq_system_events_event_id"),
    )
    op.create_index("ix_system_events_at", "system_events", ["at"])
    op.create_index("ix_system_events_kind_at", "system_events", ["kind", "at"])
    op.create_index("ix_system_events_symbol", "system_events", ["symbol"])
    op.create_index("ix_system_events_position_id", "system_events", ["position_id"])

    op.create_table(
        "account_snapshots",
        _id(),
        _ms("at"),
        _money("equity"),
        _money("available_margin"),
        _money("used_margin"),
        _money("unrealized_pnl"),
        _money("exposure"),
        sa.PrimaryKeyConstraint("id", name="pk_account_snapshots"),
    )
    op.create_index("ix_account_snapshots_at", "account_snapshots", ["at"])


def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents.
    for table in (
        "account_snapshots",
        "system_events",
        "trades",
        "fills",
        "order_events",
        "orders",
        "candles",
    ):
        op.drop_table(table)
