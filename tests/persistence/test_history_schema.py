"""The history database: migrations, models and schema checks on SQLite and PostgreSQL.

PostgreSQL runs when ``BASTION_TEST_PG_URL`` is set (CI sets it) and is skipped otherwise.
Each PostgreSQL test works in a schema of its own, created and dropped by the fixture, so it
never touches other tables in that database and reruns start clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.settings import Settings, history_url
from domain.errors import StoreError
from persistence.history import schema
from persistence.history.engine import BadDatabaseUrl, make_engine, normalise_url, safe_url
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
from persistence.history.types import quantize

TABLES = {
    "candles",
    "orders",
    "order_events",
    "fills",
    "trades",
    "system_events",
    "account_snapshots",
}
# 18 integer digits and 10 fractional ones: more than a float (or SQLite's NUMERIC) can hold.
BIG = Decimal("123456789012345678.0123456789")


@pytest.fixture
def migrated(url: str) -> Iterator[sa.Engine]:
    schema.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(url: str) -> None:
    assert schema.current(url) is None
    assert schema.upgrade(url) == (None, schema.head())
    assert _tables(url) == TABLES
    assert schema.check(url) == schema.head()
    assert schema.upgrade(url) == (schema.head(), schema.head())  # idempotent

    previous = schema.revisions()[-2]
    assert schema.downgrade(url, "-1") == (schema.head(), previous)
    assert _tables(url) == TABLES
    with pytest.raises(schema.HistorySchemaMissing, match="needs"):
        schema.check(url)
    assert schema.upgrade(url) == (previous, schema.head())
    assert schema.check(url) == schema.head()

    assert schema.downgrade(url, "base") == (schema.head(), None)
    assert _tables(url) == set()
    assert schema.current(url) is None
    assert schema.upgrade(url) == (None, schema.head())
    assert _tables(url) == TABLES


def test_replay_keys_migration_numbers_existing_rows(url: str) -> None:
    """0002 numbers order events already stored and keeps one snapshot per instant."""
    schema.upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO orders (client_id, symbol, role, type, side, qty, reduce_only,"
                " status, created_at, updated_at) VALUES ('c1', 'BTC/USD:USD', 'entry', 'limit',"
                " 'buy', 1, false, 'filled', 1, 3)"
            )
        )
        for at, status in ((1, "sent"), (2, "acked"), (3, "filled")):
            connection.execute(
                sa.text("INSERT INTO order_events (client_id, status, at) VALUES ('c1', :s, :a)"),
                {"s": status, "a": at},
            )
        for equity in (100, 101):
            connection.execute(
                sa.text(
                    "INSERT INTO account_snapshots (at, equity, available_margin, used_margin,"
                    " unrealized_pnl, exposure) VALUES (5, :e, 0, 0, 0, 0)"
                ),
                {"e": equity},
            )
    engine.dispose()
    schema.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        events = session.scalars(sa.select(OrderEvent).order_by(OrderEvent.at)).all()
        assert [(e.seq, e.status) for e in events] == [(1, "sent"), (2, "acked"), (3, "filled")]
        snapshots = session.scalars(sa.select(AccountSnapshot)).all()
        assert [s.equity for s in snapshots] == [Decimal(100)]
    engine.dispose()


def test_migrations_match_the_models(migrated: sa.Engine) -> None:
    with migrated.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def _rows() -> list[Base]:
    order = OrderRecord(
        client_id="bst-1-entry",
        exchange_id="ex-1",
        position_id="pos-1",
        symbol="BTC/USD:USD",
        role="entry",
        type="limit",
        side="buy",
        qty=Decimal("0.0001"),
        price=BIG,
        trigger_price=None,
        reduce_only=False,
        status="open",
        created_at=1_700_000_000_000,
        updated_at=1_700_000_000_500,
    )
    order.events.append(
        OrderEvent(seq=1, status="sent", reason="entry signal", at=1_700_000_000_000)
    )
    return [
        Candle(
            symbol="BTC/USD:USD",
            timeframe="15m",
            time=1_700_000_000_000,
            open=Decimal("37000.5"),
            high=Decimal("37100.25"),
            low=Decimal("36900.125"),
            close=Decimal("37050.0000000001"),
            volume=BIG,
        ),
        order,
        FillRecord(
            fill_id="fill-1",
            client_id="bst-1-entry",
            position_id="pos-1",
            symbol="BTC/USD:USD",
            side="buy",
            qty=Decimal("0.0001"),
            price=Decimal("37000.5"),
            fee=Decimal("-0.0000000001"),
            fee_currency="USD",
            ts=1_700_000_000_400,
        ),
        Trade(
            position_id="pos-1",
            symbol="BTC/USD:USD",
            side="long",
            strategy="smc",
            origin="strategy",
            opened_at=1_700_000_000_400,
            closed_at=1_700_000_900_000,
            qty=Decimal("0.0001"),
            entry_price=Decimal("37000.5"),
            exit_price=Decimal("37500"),
            fees=Decimal("0.0037"),
            funding=Decimal("-0.0001"),
            realized_pnl=Decimal("0.0463"),
            r_multiple=Decimal("1.2345678901"),
            entry_reason="bos+ob",
            exit_reason="take_profit",
        ),
        SystemEvent(
            event_id="risk:pos-1:1",
            at=1_700_000_000_100,
            kind="risk_decision",
            reason_code="accepted",
            symbol="BTC/USD:USD",
            position_id="pos-1",
            source="risk",
            who=None,
            payload={"qty": "0.0001", "limits": {"max_leverage": 3}, "ok": True, "n": [1, 2]},
        ),
        AccountSnapshot(
            at=1_700_000_000_000,
            equity=BIG,
            available_margin=Decimal("9000.1234567891"),
            used_margin=Decimal("1000"),
            unrealized_pnl=Decimal("-12.5"),
            exposure=Decimal("3000"),
        ),
    ]


def _columns(row: Base) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in sa.inspect(type(row)).column_attrs}


def test_models_round_trip(migrated: sa.Engine) -> None:
    written = _rows()
    expected = [
        {k: v for k, v in _columns(row).items() if k != "id"} for row in written
    ]  # before flush: ids are assigned by the database
    with Session(migrated) as session, session.begin():
        session.add_all(written)
    with Session(migrated) as session:
        for row, want in zip(written, expected, strict=True):
            loaded = session.scalars(sa.select(type(row))).one()
            got = {k: v for k, v in _columns(loaded).items() if k != "id"}
            assert got == want, type(row).__name__
            for value in got.values():
                if isinstance(value, Decimal):  # exact, same scale on both backends
                    assert value.as_tuple().exponent == -10
        assert session.scalars(sa.select(OrderRecord)).one().events[0].reason == "entry signal"
        snapshot = session.scalars(sa.select(AccountSnapshot)).one()
        assert snapshot.equity == BIG
        assert str(snapshot.equity) == "123456789012345678.0123456789"
        event = session.scalars(sa.select(SystemEvent)).one()
        assert event.payload["limits"] == {"max_leverage": 3}


def _insert_twice(engine: sa.Engine, make: object) -> None:
    with Session(engine) as session, session.begin():
        session.add(make())  # type: ignore[operator]
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(make())  # type: ignore[operator]


def test_duplicate_fill_id_is_rejected(migrated: sa.Engine) -> None:
    _insert_twice(
        migrated,
        lambda: FillRecord(
            fill_id="fill-1",
            symbol="ETH/USD:USD",
            side="sell",
            qty=Decimal(1),
            price=Decimal(2000),
            fee=Decimal(0),
            ts=1,
        ),
    )


def test_duplicate_event_id_is_rejected(migrated: sa.Engine) -> None:
    _insert_twice(
        migrated,
        lambda: SystemEvent(event_id="kill:1", at=1, kind="kill_switch", payload={}),
    )


def test_duplicate_candle_is_rejected(migrated: sa.Engine) -> None:
    one = Decimal(1)
    _insert_twice(
        migrated,
        lambda: Candle(
            symbol="BTC/USD:USD",
            timeframe="1m",
            time=60_000,
            open=one,
            high=one,
            low=one,
            close=one,
            volume=one,
        ),
    )


def test_order_event_needs_its_order(migrated: sa.Engine) -> None:
    with pytest.raises(IntegrityError), Session(migrated) as session, session.begin():
        session.add(OrderEvent(client_id="nobody", seq=1, status="sent", at=1))


def test_check_refuses_an_unmigrated_database(url: str) -> None:
    with pytest.raises(schema.HistorySchemaMissing, match=r"run `python run\.py migrate`"):
        schema.check(url)


def test_check_refuses_a_newer_database(url: str) -> None:
    schema.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    engine.dispose()
    for operation in (schema.check, schema.upgrade):
        with pytest.raises(schema.HistorySchemaTooNew, match="newer Bastion") as info:
            operation(url)
        assert isinstance(info.value, StoreError)
        assert "'ffff9999'" in str(info.value)
    assert _tables(url) == TABLES  # untouched


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


def test_url_normalisation_and_masking() -> None:
    url = normalise_url("postgresql://bastion:pg-secret@db:5432/history")
    assert url.drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/d").drivername == "postgresql+psycopg"
    assert safe_url(url) == "postgresql+psycopg://bastion:***@db:5432/history"
    for bad in ("not a url", "mysql://u:pg-secret@h/d", "postgresql+nodriver://u:pg-secret@h/d"):
        with pytest.raises(BadDatabaseUrl) as info:
            make_engine(bad)
        assert "pg-secret" not in str(info.value)


def test_money_refuses_floats_and_overflow() -> None:
    assert quantize("1.00000000005") == Decimal("1.0000000001")  # half away from zero
    with pytest.raises(TypeError):
        quantize(0.1)
    with pytest.raises(ValueError, match="integer digits"):
        quantize(Decimal("1e18"))


def test_history_url_defaults_to_sqlite_per_mode(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert history_url(settings, "paper") == f"sqlite:///{tmp_path}/paper/history.db"
    assert history_url(Settings(data_dir=Path("data")), "live") == "sqlite:///data/live/history.db"
    pg = "postgresql://bastion:pw@db/history"
    assert history_url(Settings(database_url=pg), "live") == pg
    # paper keeps its own books: the live URL never receives paper trades
    assert history_url(Settings(database_url=pg, data_dir=tmp_path), "paper").startswith("sqlite")
    paper = "postgresql://bastion:pw@db/paper_history"
    assert history_url(Settings(database_url=pg, paper_database_url=paper), "paper") == paper
