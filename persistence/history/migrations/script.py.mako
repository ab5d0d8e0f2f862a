"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Written by hand; must run on SQLite and PostgreSQL. Column types come from
persistence.history.types only; never import the models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.history.types import Id, Json, Money

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
