"""Replay keys: order events numbered per order, one account snapshot per instant.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The history writer replays its spool after an outage; every table it writes needs a natural
key so a replayed row is recognised instead of stored twice. ``order_events`` gains ``seq`` (the
event's ordinal within its order, as the position store numbers them) with a unique index on
``(client_id, seq)``; ``account_snapshots.at`` becomes unique. Existing rows are numbered in id
order, and duplicate snapshots (same ``at``) keep their first row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_events", sa.Column("seq", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE order_events SET seq = (SELECT count(*) FROM order_events AS e2"
        " WHERE e2.client_id = order_events.client_id AND e2.id <= order_events.id)"
    )
    with op.batch_alter_table("order_events") as batch:
        batch.alter_column("seq", existing_type=sa.Integer(), nullable=False)
    op.create_index(
        "ix_order_events_client_id_seq", "order_events", ["client_id", "seq"], unique=True
    )

    op.execute(
        "DELETE FROM account_snapshots WHERE id NOT IN"
        " (SELECT min(id) FROM account_snapshots GROUP BY at)"
    )
    op.drop_index("ix_account_snapshots_at", table_name="account_snapshots")
    op.create_index("ix_account_snapshots_at", "account_snapshots", ["at"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_account_snapshots_at", table_name="account_snapshots")
    op.create_index("ix_account_snapshots_at", "account_snapshots", ["at"])
    op.drop_index("ix_order_events_client_id_seq", table_name="order_events")
    with op.batch_alter_table("order_events") as batch:
        batch.drop_column("seq")
