"""The history writer on SQLite and PostgreSQL: idempotent rows, the store tail, the spool.

The writer runs as in the service: a thread with its mailbox, reading a real position store
that a trading session wrote through the domain's own events.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from actors.audit import Observed
from actors.history import HistoryWriter
from actors.messages import AccountEquity, Audit, KillSwitchChanged, TradeClosed
from adapters.marketdata.events import CandleClosed
from adapters.settings import HistorySettings
from domain.models import Candle, Fill, OrderRole, PositionSide
from domain.position import Position
from persistence.history import schema
from persistence.history.engine import make_engine
from persistence.history.models import (
    AccountSnapshot,
    FillRecord,
    OrderEvent,
    OrderRecord,
    SystemEvent,
    Trade,
)
from persistence.history.rows import Row, write_rows
from persistence.history.spool import Spool
from persistence.store import PositionStore

D = Decimal
SYMBOL = "PF_XBTUSD"
T0 = 1_767_225_600_000  # 2026-01-01 UTC
FAST = HistorySettings(flush_interval_s=0.05, retry_max_s=0.2, account_snapshot_interval_s=0)


def round_trip(store: PositionStore, pid: str, *, at: int, exit_price: str = "110") -> Position:
    """A long of 2 at 100 with its stop at 90, closed by its stop at ``exit_price``."""
    pos, change = Position.open(
        pid, SYMBOL, PositionSide.LONG, D(2), at=at, planned_stop=D(90), strategy="ema_cross"
    )
    store.commit(pos, change)
    entry = Fill(
        f"{pid}-f1", SYMBOL, pos.side.entry_side, D(2), D(100), at + 1, pos.entry_client_id
    )
    entry = replace(entry, fee=D("0.1"))
    change = pos.apply_fill(entry, OrderRole.ENTRY, at=at + 1)
    assert change is not None
    store.commit(pos, change)
    change = pos.submit_stop(D(90), at=at + 2)
    store.commit(pos, change)
    stop_id = change.orders[0].client_id
    store.commit(pos, pos.on_stop_acked(stop_id, at=at + 3, exchange_id="X1"))
    stop = Fill(
        f"{pid}-f2", SYMBOL, pos.side.exit_side, D(2), D(exit_price), at + 4, stop_id, fee=D("0.1")
    )
    change = pos.apply_fill(stop, OrderRole.STOP, at=at + 4)
    assert change is not None
    store.commit(pos, change)
    assert pos.is_terminal
    return pos


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PositionStore]:
    opened = PositionStore.open(tmp_path / "store" / "positions.db")
    yield opened
    opened.close()


def _writer(url: str, store: PositionStore | None, tmp_path: Path, **kw: object) -> HistoryWriter:
    writer = HistoryWriter(
        url,
        spool_path=tmp_path / "spool" / "history-spool.db",
        params=HistorySettings(**{**FAST.model_dump(), **kw}),
        store_path=store.path if store is not None else None,
    )
    writer.start()
    return writer


def _count(url: str, model: type) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def test_rows_written_twice_are_stored_once_and_states_updated(url: str) -> None:
    schema.upgrade(url)
    order = {
        "client_id": "c1",
        "exchange_id": None,
        "position_id": "p1",
        "symbol": SYMBOL,
        "role": "entry",
        "type": "limit",
        "side": "buy",
        "qty": "2",
        "price": "100",
        "trigger_price": None,
        "reduce_only": False,
        "status": "sending",
        "created_at": T0,
        "updated_at": T0,
    }
    first = [
        Row("orders", order),
        Row("order_events", {"client_id": "c1", "seq": 1, "status": "sending", "at": T0}),
        Row("system_events", {"event_id": "e1", "at": T0, "kind": "signal", "payload": {"a": 1}}),
    ]
    acked = {**order, "status": "acked", "exchange_id": "X1", "updated_at": T0 + 5}
    second = [
        *first,  # a replay of everything above
        Row("orders", acked),
        Row("order_events", {"client_id": "c1", "seq": 2, "status": "acked", "at": T0 + 5}),
        Row("system_events", {"event_id": "e1", "at": T0 + 9, "kind": "alert", "payload": {}}),
    ]
    engine = make_engine(url)
    try:
        for batch in (first, second, second):
            with engine.begin() as connection:
                write_rows(connection, batch)
        with Session(engine) as session:
            (stored,) = session.scalars(sa.select(OrderRecord)).all()
            assert (stored.status, stored.exchange_id, stored.updated_at) == ("acked", "X1", T0 + 5)
            assert [(e.seq, e.status) for e in stored.events] == [(1, "sending"), (2, "acked")]
            (event,) = session.scalars(sa.select(SystemEvent)).all()
            assert (event.kind, event.at, event.payload) == ("signal", T0, {"a": 1})  # first kept
    finally:
        engine.dispose()


def test_the_store_tail_copies_orders_fills_and_trades(
    url: str, store: PositionStore, tmp_path: Path
) -> None:
    schema.upgrade(url)
    pos = round_trip(store, "p1", at=T0, exit_price="110")
    open_pos, change = Position.open("p2", "PF_ETHUSD", PositionSide.SHORT, D(1), at=T0 + 10)
    store.commit(open_pos, change)
    writer = _writer(url, store, tmp_path)
    try:
        assert writer.wait_idle(10), writer.snapshot()
        engine = make_engine(url)
        with Session(engine) as session:
            orders = {o.client_id: o for o in session.scalars(sa.select(OrderRecord))}
            assert set(orders) == {o.client_id for o in store.orders()}
            for journal in store.orders():
                assert orders[journal.client_id].status == journal.status.value
            events = session.scalars(sa.select(OrderEvent)).all()
            assert len(events) == store.count("order_events")
            fills = {f.fill_id: f for f in session.scalars(sa.select(FillRecord))}
            assert set(fills) == {"p1-f1", "p1-f2"}
            assert (fills["p1-f2"].side, fills["p1-f2"].price) == ("sell", D(110))
            (trade,) = session.scalars(sa.select(Trade)).all()  # p2 never filled: no trade
            expected = TradeClosed.of(pos, T0 + 4)
            # (110 - 100) x 2 - 0.2 fees = 19.8; risk (100 - 90) x 2 = 20 -> 0.99 R
            assert trade.realized_pnl == expected.pnl == D("19.8")
            assert trade.r_multiple == D("0.99")
            assert (trade.entry_price, trade.exit_price, trade.qty) == (D(100), D(110), D(2))
            assert (trade.strategy, trade.origin, trade.closed_at) == (
                "ema_cross",
                "strategy",
                T0 + 4,
            )
        engine.dispose()
    finally:
        writer.stop()
    pos.discard()
    open_pos.discard()


def test_messages_become_events_candles_and_snapshots(url: str, tmp_path: Path) -> None:
    schema.upgrade(url)
    writer = _writer(url, None, tmp_path, account_snapshot_interval_s=60)
    latch = KillSwitchChanged(True, "operator", T0)
    try:
        writer.tell(Observed("risk", T0, latch))
        writer.tell(Audit("operator_command", "kill", T0, who="cli:ops", payload={"x": D("1.5")}))
        bar = Candle(SYMBOL, "1m", T0, 1.5, 2.0, 1.0, 1.75, 10.0)
        writer.tell(CandleClosed(SYMBOL, "1m", bar))
        writer.tell(CandleClosed(SYMBOL, "1m", bar))  # a repeated bar (warm-up and live)
        for i in range(5):  # one snapshot a minute: the first and the one 60 s later
            reading = AccountEquity(D(1000 + i), T0 + i * 15_000, D(100))
            writer.tell(Observed("execution", T0, reading))
        assert writer.wait_idle(10), writer.snapshot()
        engine = make_engine(url)
        with Session(engine) as session:
            events = session.scalars(sa.select(SystemEvent).order_by(SystemEvent.kind)).all()
            assert [(e.kind, e.reason_code, e.source, e.who) for e in events] == [
                ("kill_switch", "latched", "risk", None),
                ("operator_command", "kill", "cli:ops", "cli:ops"),
            ]
            assert events[1].payload == {"x": "1.5"}
            snapshots = session.scalars(sa.select(AccountSnapshot).order_by(AccountSnapshot.at))
            assert [(s.at, s.equity, s.available_margin) for s in snapshots] == [
                (T0, D(1000), D(900)),
                (T0 + 60_000, D(1004), D(904)),
            ]
        engine.dispose()
        assert _count(url, Trade) == 0
    finally:
        writer.stop()


def test_an_unmigrated_database_is_spooled_until_migrated(
    tmp_path: Path, store: PositionStore
) -> None:
    """Nothing is written into a schema this Bastion does not know; it all waits in order."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    pos = round_trip(store, "p1", at=T0)
    writer = _writer(url, store, tmp_path)
    try:
        for i in range(50):
            writer.tell(Audit("alert", f"a{i}", T0 + i))
        assert not writer.wait_idle(1.0)
        assert writer.snapshot()["pending_in_spool"] >= 50
        assert not writer.stats.db_up
        schema.upgrade(url)
        assert writer.wait_idle(10), writer.snapshot()
        assert _count(url, SystemEvent) == 50
        assert _count(url, FillRecord) == 2
        assert _count(url, Trade) == 1
        assert writer.snapshot()["pending_in_spool"] == 0
    finally:
        writer.stop()
    pos.discard()


def test_a_spool_left_by_a_crash_is_replayed_once(url: str, tmp_path: Path) -> None:
    """Rows spooled by a process that died (some already in the database) are replayed on
    start; the database ends with each row once."""
    schema.upgrade(url)
    rows = [
        Row("system_events", {"event_id": f"e{i}", "at": T0 + i, "kind": "alert"})
        for i in range(30)
    ]
    engine = make_engine(url)
    with engine.begin() as connection:  # the first 10 reached the database before the crash
        write_rows(connection, rows[:10])
    engine.dispose()
    spool = Spool(tmp_path / "spool" / "history-spool.db")
    spool.append(rows, {"order_event": 0, "transition": 0})
    spool.close()
    writer = _writer(url, None, tmp_path)
    try:
        assert writer.wait_idle(10), writer.snapshot()
        assert writer.stats.replayed == 30
        assert writer.stats.rejected == 0  # the ten already there were recognised, not refused
    finally:
        writer.stop()
    engine = make_engine(url)
    with Session(engine) as session:
        stored = session.execute(sa.select(SystemEvent.event_id, SystemEvent.at)).all()
    engine.dispose()
    assert sorted(stored, key=lambda r: r[1]) == [(f"e{i}", T0 + i) for i in range(30)]


def test_a_message_no_row_can_be_made_of_does_not_cost_its_batch(url: str, tmp_path: Path) -> None:
    schema.upgrade(url)
    writer = _writer(url, None, tmp_path, batch_size=50)
    try:
        for i in range(5):
            writer.tell(Audit("alert", f"good{i}", T0 + i))
        writer.tell(Audit("no_such_kind", "bad", T0 + 5))  # a producer's bug
        writer.tell(Audit("alert", "good5", T0 + 6))
        assert writer.wait_idle(10), writer.snapshot()
        assert writer.stats.unusable == 1
    finally:
        writer.stop()
    assert _count(url, SystemEvent) == 6


def test_a_replaced_store_is_read_from_its_start(tmp_path: Path) -> None:
    """A cursor left by another store (the file was replaced) does not skip the new one."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    schema.upgrade(url)
    first = PositionStore.open(tmp_path / "a" / "positions.db")
    for i in range(3):
        round_trip(first, f"old{i}", at=T0 + i * 10).discard()
    writer = _writer(url, first, tmp_path)
    assert writer.wait_idle(10), writer.snapshot()
    writer.stop()
    first.close()
    replaced = PositionStore.open(tmp_path / "b" / "positions.db")  # as many rows, and more
    for i in range(4):
        round_trip(replaced, f"new{i}", at=T0 + 1_000 + i * 10).discard()
    writer = _writer(url, replaced, tmp_path)  # the same spool: the old store's cursor
    try:
        assert writer.wait_idle(10), writer.snapshot()
    finally:
        writer.stop()
        replaced.close()
    engine = make_engine(url)
    with Session(engine) as session:
        trades = set(session.scalars(sa.select(Trade.position_id)))
    engine.dispose()
    assert trades == {f"old{i}" for i in range(3)} | {f"new{i}" for i in range(4)}


def test_a_row_the_database_refuses_is_set_aside_not_retried_forever(
    url: str, tmp_path: Path
) -> None:
    schema.upgrade(url)
    writer = _writer(url, None, tmp_path)
    try:
        writer.tell(Audit("alert", "before", T0))
        too_big = D(10) ** 20  # more integer digits than a money column holds
        writer.tell(Observed("execution", T0, AccountEquity(too_big, T0 + 1)))
        writer.tell(Audit("alert", "after", T0 + 2))
        assert writer.wait_idle(10), writer.snapshot()
        assert writer.stats.rejected == 1
        assert _count(url, SystemEvent) == 2
        spool = Spool(tmp_path / "spool" / "history-spool.db")
        ((row, error),) = spool.rejected()
        spool.close()
        assert row.table == "account_snapshots"
        assert "digits" in error or "overflow" in error.lower()
    finally:
        writer.stop()


def test_tell_never_blocks_and_counts_what_it_drops(tmp_path: Path) -> None:
    """A full mailbox (the writer stuck) drops and counts; the caller returns at once."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    writer = HistoryWriter(
        url, spool_path=tmp_path / "spool.db", params=HistorySettings(queue_size=100)
    )  # never started: nothing drains the mailbox
    done = threading.Event()

    def produce() -> None:
        for i in range(150):
            writer.tell(Audit("alert", "x", T0 + i))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(2)
    assert writer.dropped == 50
    writer.stop()
