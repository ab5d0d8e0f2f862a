"""PostgreSQL goes away while paper trades, and comes back: nothing lost, nothing twice.

The paper system runs at 120x with its history in a PostgreSQL schema owned by a role of its
own. Mid-run the role is refused logins and its backend connections are terminated (what a
server restart or a failover looks like from the client). While the database is unreachable an
operator's market order appears at the emulator: Bastion must adopt it and protect it, which is
trading going on without the history database. When logins are allowed again, the writer
replays its spool, and the history must hold exactly what the position store holds (every order,
order event, fill and round trip) plus every audit event the writer produced.

Needs ``BASTION_TEST_PG_URL`` (CI sets it; without it this test is skipped on a laptop only).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.messages import TradeClosed
from actors.runtime import System
from adapters.settings import load_settings
from persistence.history import schema
from persistence.history.engine import make_engine, normalise_url
from persistence.history.rows import Row
from persistence.history.types import quantize
from persistence.store import PositionStore
from tests.crash.live_processes import ManualTrader
from tests.paper_run import paper_running
from tests.persistence.conftest import pg_schema_url

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("BASTION_TEST_PG_URL")
SPEED = 120.0
OUTAGE_S = 15.0

pytestmark = pytest.mark.skipif(not PG_URL, reason="BASTION_TEST_PG_URL is not set")


@pytest.fixture
def pg_role() -> Iterator[tuple[str, sa.Engine, str]]:
    """A login role owning a schema of its own: (role, admin engine, the role's URL)."""
    assert PG_URL is not None
    role = f"bastion_outage_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        connection.exec_driver_sql(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    base = normalise_url(PG_URL).set(username=role, password=None)
    url = pg_schema_url(base.render_as_string(hide_password=False), role)
    try:
        yield role, admin, url
    finally:
        _allow(admin, role, allowed=False)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{role}" CASCADE')
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


def _allow(admin: sa.Engine, role: str, *, allowed: bool) -> None:
    """Let ``role`` log in, or refuse it and end every session it has.

    The refusal is committed before the sessions are ended: a client that reconnects at once
    must meet the refusal, not a role still allowed inside an open transaction.
    """
    with admin.begin() as connection:
        connection.exec_driver_sql(f'ALTER ROLE "{role}" {"LOGIN" if allowed else "NOLOGIN"}')
    if allowed:
        return
    with admin.begin() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
            {"r": role},
        )


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _store_counts(path: Path) -> dict[str, int]:
    with PositionStore.open(path, readonly=True) as store:
        return {t: store.count(t) for t in ("transitions", "order_events", "fills", "orders")}


def test_history_survives_a_postgres_outage_while_trading(
    tmp_path: Path, pg_role: tuple[str, sa.Engine, str]
) -> None:
    role, admin, url = pg_role
    schema.upgrade(url)
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_LOG_DIR": str(tmp_path / "logs"),
        "BASTION_PAPER_DATABASE_URL": url,
        "BASTION_HISTORY__RETRY_MAX_S": "1",
        "BASTION_HISTORY__ACCOUNT_SNAPSHOT_INTERVAL_S": "0",
    }
    settings = load_settings(ROOT / "config.paper.yaml", env)
    store_path = tmp_path / "data" / "paper" / "positions.db"
    produced: list[Row] = []

    def on_ready(system: System) -> None:
        assert system.history is not None
        system.history.tap = produced.extend

    with paper_running(settings, speed=SPEED, on_ready=on_ready) as run:
        system = run.system
        writer = system.history
        assert writer is not None
        _wait(lambda: writer.stats.db_up and writer.stats.written > 0, 30, "first writes")

        _allow(admin, role, allowed=False)
        cut_at = time.monotonic()
        before = _store_counts(store_path)
        trader = ManualTrader(system.venue_url)
        symbol = settings.universe.symbols[-1]
        trader.market(symbol, "buy", 2_000)  # the operator's own trade, to be adopted
        _wait(lambda: not writer.stats.db_up, 20, "the writer to notice the outage")
        _wait(lambda: _adopted_and_protected(store_path, symbol), 30, "adoption during outage")
        during = _store_counts(store_path)
        spooled_during = writer.snapshot()["pending_in_spool"]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        assert not writer.stats.db_up, "the database came back by itself?"
        _allow(admin, role, allowed=True)
        restored_at = time.monotonic()
        _wait(writer.caught_up, 60, "the spool to be replayed")
        caught_up_s = time.monotonic() - restored_at
    assert run.code == 0
    stats = writer.snapshot()  # after the stop: the last messages were written too

    # trading went on while the database was away, and it was all spooled
    assert during["transitions"] > before["transitions"], (before, during)
    assert during["order_events"] > before["order_events"], (before, during)
    assert spooled_during > 0
    assert stats["outages"] >= 1 and stats["replayed"] >= spooled_during, stats
    assert stats["pending_in_spool"] == 0 and stats["rejected"] == 0 and stats["dropped"] == 0
    assert caught_up_s < 30

    _assert_history_matches_store(url, store_path, produced)
    print(
        f"\nhistory outage: {OUTAGE_S:.0f}s down, {spooled_during} rows spooled meanwhile, "
        f"{stats['replayed']} replayed, caught up {caught_up_s:.1f}s after PostgreSQL returned"
    )


def _adopted_and_protected(store_path: Path, symbol: str) -> bool:
    with PositionStore.open(store_path, readonly=True) as store:
        found = False
        for pos in store.load_active():
            if pos.symbol == symbol and pos.origin.value == "adopted":
                found = pos.data.stop_resting is not None
            pos.discard()
        return found


def _assert_history_matches_store(url: str, store_path: Path, produced: list[Row]) -> None:
    """Every store order, order event, fill and round trip is in the history exactly once, and
    every audit event the writer produced is there."""
    with PositionStore.open(store_path, readonly=True) as store:
        orders = {o.client_id: o.status.value for o in store.orders()}
        event_count = store.count("order_events")
        positions = store.states()
        results = {}  # every position that was ever exposed: None while open, else its PnL
        for position_id in positions:
            pos = store.load(position_id)
            if pos.data.entry_filled:
                results[position_id] = TradeClosed.of(pos, 0).pnl if pos.is_terminal else None
            pos.discard()
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as raw:
        fills = {r[0] for r in raw.execute("SELECT fill_id FROM fills")}
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            stored_orders = dict(
                connection.execute(sa.text("SELECT client_id, status FROM orders")).all()
            )
            stored_events = connection.execute(
                sa.text("SELECT count(*) FROM order_events")
            ).scalar()
            stored_fills = {r[0] for r in connection.execute(sa.text("SELECT fill_id FROM fills"))}
            trades = {
                r[0]: (r[1], r[2])
                for r in connection.execute(
                    sa.text("SELECT position_id, closed_at, realized_pnl FROM trades")
                )
            }
            event_ids = [
                r[0] for r in connection.execute(sa.text("SELECT event_id FROM system_events"))
            ]
    finally:
        engine.dispose()
    assert stored_orders == orders
    assert stored_events == event_count
    assert stored_fills == fills
    assert set(trades) == set(results)
    for position_id, pnl in results.items():
        closed_at, realized = trades[position_id]
        assert (closed_at is None) == (pnl is None), position_id
        if pnl is not None:
            assert Decimal(realized) == quantize(pnl), position_id
    produced_ids = {r.values["event_id"] for r in produced if r.table == "system_events"}
    assert produced_ids, "no audit event was produced"
    assert produced_ids <= set(event_ids)  # (events from before the tap was set are there too)
