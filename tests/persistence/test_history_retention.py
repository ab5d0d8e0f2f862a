"""History retention: old candles and system events are pruned in batches; the books never are.

Runs on SQLite and, when ``BASTION_TEST_PG_URL`` is set, on PostgreSQL (see ``conftest.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from structlog.testing import capture_logs

from adapters.settings import HistorySettings
from persistence.history import schema
from persistence.history.engine import make_engine
from persistence.history.models import (
    AccountSnapshot,
    Candle,
    FillRecord,
    OrderEvent,
    OrderRecord,
    SystemEvent,
    Trade,
)
from persistence.history.retention import DAY_MS, PruneResult, RetentionPolicy, prune

NOW = 1_700_000_000_000
KEEP = 10 * DAY_MS
CUTOFF = NOW - KEEP  # rows strictly older than this go; a row exactly at it stays
ONE = Decimal(1)
BOOKS = (OrderRecord, OrderEvent, FillRecord, Trade, AccountSnapshot)


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    schema.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _policy(
    candles: int | None = KEEP, events: int | None = KEEP, batch: int = 1000
) -> RetentionPolicy:
    return RetentionPolicy(candles_keep_ms=candles, events_keep_ms=events, batch=batch)


def _add_candles(engine: sa.Engine, times: list[int], symbols: tuple[str, ...] = ("BTC",)) -> None:
    rows = [
        {
            "symbol": symbol,
            "timeframe": "1m",
            "time": t,
            "open": ONE,
            "high": ONE,
            "low": ONE,
            "close": ONE,
            "volume": ONE,
        }
        for t in times
        for symbol in symbols
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(Candle), rows)


def _add_events(engine: sa.Engine, times: list[int], prefix: str = "e") -> None:
    rows = [
        {"event_id": f"{prefix}{i}", "at": t, "kind": "alert", "payload": {}}
        for i, t in enumerate(times)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(SystemEvent), rows)


def _times(engine: sa.Engine, column: Any) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(column).order_by(column)))


def _count(engine: sa.Engine, model: Any) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def _old(n: int) -> list[int]:
    """``n`` distinct times, all older than the cutoff."""
    return [CUTOFF - 1 - i * 60_000 for i in range(n)]


def test_policy_from_settings() -> None:
    policy = RetentionPolicy.from_settings(HistorySettings())
    assert policy == RetentionPolicy(
        candles_keep_ms=90 * DAY_MS, events_keep_ms=365 * DAY_MS, batch=5000
    )
    policy = RetentionPolicy.from_settings(
        HistorySettings(candles_keep_days=0.5, events_keep_days=None, prune_batch=10)
    )
    assert policy == RetentionPolicy(candles_keep_ms=DAY_MS // 2, events_keep_ms=None, batch=10)
    with pytest.raises(ValueError, match="batch"):
        RetentionPolicy(candles_keep_ms=None, events_keep_ms=None, batch=0)
    with pytest.raises(ValueError, match="candles_keep_ms"):
        RetentionPolicy(candles_keep_ms=0, events_keep_ms=None, batch=1)


def test_prunes_strictly_older_rows_and_keeps_the_cutoff(engine: sa.Engine) -> None:
    times = [CUTOFF - KEEP, CUTOFF - 1, CUTOFF, CUTOFF + 1, NOW]
    _add_candles(engine, times, symbols=("BTC", "ETH"))
    _add_events(engine, times)
    with capture_logs() as logs:
        result = prune(engine, _policy(), NOW)
    assert result.candles_deleted == 4  # two series, two old bars each
    assert result.events_deleted == 2
    assert result.batches == 2  # one (short) batch per table
    assert _times(engine, Candle.time) == [CUTOFF, CUTOFF, CUTOFF + 1, CUTOFF + 1, NOW, NOW]
    assert _times(engine, SystemEvent.at) == [CUTOFF, CUTOFF + 1, NOW]
    assert [entry["event"] for entry in logs] == ["history_pruned"]
    assert logs[0]["candles_deleted"] == 4
    assert logs[0]["events_deleted"] == 2
    assert logs[0]["batches"] == 2

    again = prune(engine, _policy(), NOW)
    assert (again.candles_deleted, again.events_deleted, again.batches) == (0, 0, 0)


def test_each_table_has_its_own_age(engine: sa.Engine) -> None:
    _add_candles(engine, [NOW - 2 * DAY_MS])
    _add_events(engine, [NOW - 2 * DAY_MS])
    result = prune(engine, _policy(candles=DAY_MS, events=3 * DAY_MS), NOW)
    assert (result.candles_deleted, result.events_deleted) == (1, 0)
    assert _count(engine, SystemEvent) == 1


def test_deletes_in_batches(engine: sa.Engine) -> None:
    _add_candles(engine, [*_old(2500), NOW])
    _add_events(engine, [*_old(2000), NOW])
    result = prune(engine, _policy(batch=1000), NOW)
    assert isinstance(result, PruneResult)
    assert result.candles_deleted == 2500
    assert result.events_deleted == 2000
    # Candles: 1000 + 1000 + 500. Events: 1000 + 1000, then an empty probe that does not count.
    assert result.batches == 5
    assert result.elapsed_s >= 0
    assert _times(engine, Candle.time) == [NOW]
    assert _times(engine, SystemEvent.at) == [NOW]


def test_a_batch_ends_on_a_time_boundary(engine: sa.Engine) -> None:
    """Rows sharing the batch's last time go together: 3 series x 5 bars, batch 4 -> 6, 6, 3."""
    _add_candles(engine, _old(5), symbols=("BTC", "ETH", "SOL"))
    result = prune(engine, _policy(events=None, batch=4), NOW, max_batches=1)
    assert (result.candles_deleted, result.batches) == (6, 1)
    result = prune(engine, _policy(events=None, batch=4), NOW)
    assert (result.candles_deleted, result.batches) == (9, 2)
    assert _count(engine, Candle) == 0


def test_max_batches_leaves_the_rest_for_the_next_call(engine: sa.Engine) -> None:
    _add_candles(engine, _old(250))
    _add_events(engine, _old(250))
    policy = _policy(batch=100)

    nothing = prune(engine, policy, NOW, max_batches=0)
    assert (nothing.candles_deleted, nothing.events_deleted, nothing.batches) == (0, 0, 0)
    assert _count(engine, Candle) == 250

    first = prune(engine, policy, NOW, max_batches=3)  # the tables take turns
    assert (first.candles_deleted, first.events_deleted, first.batches) == (200, 100, 3)
    assert _count(engine, Candle) == 50
    assert _count(engine, SystemEvent) == 150

    second = prune(engine, policy, NOW, max_batches=3)
    assert (second.candles_deleted, second.events_deleted, second.batches) == (50, 150, 3)

    third = prune(engine, policy, NOW, max_batches=3)
    assert (third.candles_deleted, third.events_deleted, third.batches) == (0, 0, 0)
    with pytest.raises(ValueError, match="max_batches"):
        prune(engine, policy, NOW, max_batches=-1)


def test_none_keeps_forever(engine: sa.Engine) -> None:
    _add_candles(engine, [0, 1, CUTOFF - 1])
    _add_events(engine, [0, 1, CUTOFF - 1])
    result = prune(engine, _policy(candles=None, events=None, batch=1), NOW)
    assert (result.candles_deleted, result.events_deleted, result.batches) == (0, 0, 0)
    assert _count(engine, Candle) == 3
    assert _count(engine, SystemEvent) == 3

    result = prune(engine, _policy(candles=None, batch=1), NOW)
    assert (result.candles_deleted, result.events_deleted, result.batches) == (0, 3, 3)
    assert _count(engine, Candle) == 3


def test_the_books_are_never_pruned(engine: sa.Engine) -> None:
    ancient = 1
    with engine.begin() as connection:
        connection.execute(
            sa.insert(OrderRecord),
            {
                "client_id": "c1",
                "symbol": "BTC/USD:USD",
                "role": "entry",
                "type": "limit",
                "side": "buy",
                "qty": ONE,
                "reduce_only": False,
                "status": "filled",
                "created_at": ancient,
                "updated_at": ancient,
            },
        )
        connection.execute(
            sa.insert(OrderEvent), {"client_id": "c1", "seq": 1, "status": "sent", "at": ancient}
        )
        connection.execute(
            sa.insert(FillRecord),
            {
                "fill_id": "f1",
                "symbol": "BTC/USD:USD",
                "side": "buy",
                "qty": ONE,
                "price": ONE,
                "fee": ONE,
                "ts": ancient,
            },
        )
        connection.execute(
            sa.insert(Trade),
            {
                "position_id": "p1",
                "symbol": "BTC/USD:USD",
                "side": "long",
                "origin": "strategy",
                "opened_at": ancient,
                "closed_at": ancient,
                "qty": ONE,
                "entry_price": ONE,
                "fees": ONE,
                "funding": ONE,
            },
        )
        connection.execute(
            sa.insert(AccountSnapshot),
            {
                "at": ancient,
                "equity": ONE,
                "available_margin": ONE,
                "used_margin": ONE,
                "unrealized_pnl": ONE,
                "exposure": ONE,
            },
        )
    _add_candles(engine, [ancient])
    _add_events(engine, [ancient])
    result = prune(engine, _policy(candles=1, events=1, batch=1), NOW)
    assert (result.candles_deleted, result.events_deleted) == (1, 1)
    assert [_count(engine, model) for model in BOOKS] == [1] * len(BOOKS)


def test_a_writer_inserts_between_batches(tmp_path: Path) -> None:
    """SQLite: a writer with a short busy timeout keeps inserting while a backlog is pruned.

    After every batch the pruner waits (on a condition, never a sleep) for the writer to
    insert a row, which proves the write lock is free between batches; the writer's second
    row of each round races the next batch, and its 100 ms busy timeout never runs out.
    """
    url = f"sqlite:///{tmp_path / 'history.db'}"
    schema.upgrade(url)
    pruner = make_engine(url)
    writer = make_engine(url)

    @event.listens_for(writer, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")

    _add_events(pruner, _old(1500), prefix="old")
    changed = threading.Condition()
    state = {"batches": 0, "rounds": 0, "written": 0, "stop": False}
    errors: list[BaseException] = []

    def insert() -> None:
        with writer.begin() as connection:
            connection.execute(
                sa.insert(SystemEvent),
                {"event_id": f"new{state['written']}", "at": NOW, "kind": "alert", "payload": {}},
            )
        state["written"] += 1  # this thread alone writes it

    def write() -> None:
        try:
            while True:
                with changed:  # one round per batch the pruner has ended
                    changed.wait_for(
                        lambda: state["batches"] > state["rounds"] or state["stop"], timeout=5
                    )
                    if state["stop"]:
                        return
                insert()  # between two batches: the pruner waits for this one
                with changed:
                    state["rounds"] += 1
                    changed.notify_all()
                insert()  # races the next batch
        except BaseException as err:  # reported by the assertions below
            errors.append(err)
            with changed:
                changed.notify_all()

    interleaved: list[bool] = []

    @event.listens_for(pruner, "checkin")  # a batch's transaction has ended
    def _after_batch(_dbapi_connection: Any, _record: Any) -> None:
        with changed:
            state["batches"] += 1
            batch = state["batches"]
            changed.notify_all()
            interleaved.append(
                changed.wait_for(lambda: state["rounds"] >= batch or bool(errors), timeout=5)
            )

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        with writer.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 100
        result = prune(pruner, _policy(candles=None, batch=50), NOW)
    finally:
        event.remove(pruner, "checkin", _after_batch)
        with changed:
            state["stop"] = True
            changed.notify_all()
        thread.join(timeout=5)
    assert errors == []
    assert result.events_deleted == 1500
    assert result.batches == 30
    assert len(interleaved) == 31  # 30 batches and the empty probe that ends the work
    assert all(interleaved)
    assert state["written"] == 2 * 31
    assert _count(pruner, SystemEvent) == state["written"]  # every new row kept, every old gone
    pruner.dispose()
    writer.dispose()
