"""Schema of the position store and its upgrade path.

``MIGRATIONS[n]`` takes a store from version ``n - 1`` to ``n``; the version lives in SQLite's
``user_version``. Opening a store applies the missing steps in order, each in its own transaction,
after copying the file aside. A store from a newer Bastion is refused untouched.
"""

from __future__ import annotations

from domain.models import OrderStatus

_STATUSES = ", ".join(f"'{s.value}'" for s in OrderStatus)

V1: tuple[str, ...] = (
    """CREATE TABLE positions (
        id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        terminal INTEGER NOT NULL,
        record TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
    "CREATE INDEX positions_live ON positions (terminal, symbol)",
    # rule 5: one live position per symbol (one-way mode), enforced before any order leaves
    "CREATE UNIQUE INDEX positions_one_live_per_symbol ON positions (symbol) WHERE terminal = 0",
    """CREATE TABLE transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        position_id TEXT NOT NULL REFERENCES positions (id),
        version INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        source TEXT,
        dest TEXT NOT NULL,
        at INTEGER NOT NULL,
        detail TEXT NOT NULL,
        UNIQUE (position_id, version)
    )""",
    """CREATE TRIGGER transitions_append_only_update BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition log is append-only'); END""",
    """CREATE TRIGGER transitions_append_only_delete BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition log is append-only'); END""",
    f"""CREATE TABLE orders (
        client_id TEXT PRIMARY KEY,
        position_id TEXT NOT NULL REFERENCES positions (id),
        symbol TEXT NOT NULL,
        role TEXT NOT NULL,
        type TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        trigger_price TEXT,
        reduce_only INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
        exchange_id TEXT,
        reason TEXT NOT NULL DEFAULT '',
        params TEXT NOT NULL,
        transition_seq INTEGER REFERENCES transitions (seq),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
    "CREATE INDEX orders_status ON orders (status)",
    "CREATE INDEX orders_position ON orders (position_id)",
    f"""CREATE TABLE order_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL REFERENCES orders (client_id),
        status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
        exchange_id TEXT,
        reason TEXT NOT NULL DEFAULT '',
        transition_seq INTEGER REFERENCES transitions (seq),
        at INTEGER NOT NULL
    )""",
    """CREATE TABLE fills (
        fill_id TEXT PRIMARY KEY,
        position_id TEXT NOT NULL REFERENCES positions (id),
        client_id TEXT,
        role TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        ts INTEGER NOT NULL,
        transition_seq INTEGER NOT NULL REFERENCES transitions (seq)
    )""",
    """CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: V1}


def latest_version() -> int:
    return max(MIGRATIONS)
