"""The history report on SQLite and PostgreSQL: window, grouping and exact numbers.

PostgreSQL runs when ``BASTION_TEST_PG_URL`` is set (see ``conftest.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from persistence.history import schema
from persistence.history.engine import make_engine
from persistence.history.models import Trade
from persistence.history.report import DAY_MS, build_report, render, utc_day

D = Decimal
HOUR = 3_600_000
JAN_1 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
NOW = JAN_1 + 9 * DAY_MS + 12 * HOUR  # 2025-01-10T12:00:00Z
SINCE_3D = NOW - 3 * DAY_MS  # 2025-01-07T12:00:00Z


def at(day: int, hour: int) -> int:
    """2025-01-<day> <hour>:00 UTC in ms."""
    return JAN_1 + (day - 1) * DAY_MS + hour * HOUR


def trade(
    position_id: str,
    *,
    symbol: str = "BTC/USD:USD",
    strategy: str | None = "ema_cross",
    closed_at: int | None,
    pnl: str | None = "0",
    fees: str = "0",
    funding: str = "0",
    r: str | None = None,
    opened_at: int | None = None,
) -> Trade:
    closed = closed_at is not None
    return Trade(
        position_id=position_id,
        symbol=symbol,
        side="long",
        strategy=strategy,
        origin="strategy" if strategy else "adopted",
        opened_at=opened_at if opened_at is not None else (closed_at or NOW) - HOUR,
        closed_at=closed_at,
        qty=D("0.5"),
        entry_price=D(50_000),
        exit_price=D(50_100) if closed else None,
        fees=D(fees),
        funding=D(funding),
        realized_pnl=D(pnl) if closed and pnl is not None else None,
        r_multiple=D(r) if r is not None else None,
    )


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    schema.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def insert(engine: sa.Engine, *trades: Trade) -> None:
    with Session(engine) as session:
        session.add_all(trades)
        session.commit()


# The week the grouped tests read (a 3-day window ending 2025-01-10 12:00Z), in close order:
#   pos  day    symbol  strategy    pnl   fees  funding  r
#   t1   01-08  BTC     ema_cross   100   2     0.5      2
#   t2   01-08  ETH     ema_cross   -40   1     0        -1
#   t3   01-09  BTC     (adopted)   -30   1.5   -0.25    -
#   t4   01-10  ETH     smc          50   1     0        1.25
#   t5   01-10  BTC     smc           0   1     0        -     (break-even: neither win nor loss)
# Outside the window: t0 closed 1 ms before it starts, t6 closes 1 ms after now (open then).
# Open at now: o1 (no close yet) and t6; o2 opens after now and is not counted.
# Incomplete: t7 closed in the window without a realised PnL.
ETH = "ETH/USD:USD"


def week() -> tuple[Trade, ...]:
    return (
        trade("t0", closed_at=SINCE_3D - 1, pnl="1000"),
        trade("t1", closed_at=at(8, 10), pnl="100", fees="2", funding="0.5", r="2"),
        trade("t2", symbol=ETH, closed_at=at(8, 15), pnl="-40", fees="1", r="-1"),
        trade("t3", strategy=None, closed_at=at(9, 9), pnl="-30", fees="1.5", funding="-0.25"),
        trade("t4", symbol=ETH, strategy="smc", closed_at=at(10, 8), pnl="50", fees="1", r="1.25"),
        trade("t5", strategy="smc", closed_at=at(10, 11), pnl="0", fees="1"),
        trade("t6", closed_at=NOW + 1, pnl="777"),
        trade("t7", closed_at=at(9, 20), pnl=None),
        trade("o1", closed_at=None),
        trade("o2", closed_at=None, opened_at=NOW + 1),
    )


def brief(stats: dict[str, Any]) -> tuple[Any, ...]:
    """(count, wins, losses, win rate, net, fees, funding, PF, DD, DD fraction, exp., avg R)."""
    dd = stats["max_drawdown"]
    return (
        stats["count"],
        stats["wins"],
        stats["losses"],
        stats["win_rate"],
        stats["net_pnl"],
        stats["fees"],
        stats["funding"],
        stats["profit_factor"],
        dd["amount"],
        dd["fraction"],
        stats["expectancy"],
        stats["avg_r"],
    )


def approx(*values: Any) -> tuple[Any, ...]:
    return tuple(pytest.approx(v) if isinstance(v, float) else v for v in values)


def test_grouped_numbers(engine: sa.Engine) -> None:
    insert(engine, *week())
    report = build_report(engine, NOW, 3)
    data = json.loads(json.dumps(report.to_dict()))  # JSON-safe, and read back as a client would

    assert data["window"] == {
        "days": 3,
        "since": SINCE_3D,
        "until": NOW,
        "since_utc": "2025-01-07T12:00:00Z",
        "until_utc": "2025-01-10T12:00:00Z",
    }
    assert (data["open_trades"], data["incomplete_trades"]) == (2, 1)  # o1, t6; t7

    # pnl 100, -40, -30, 50, 0: wins 2, losses 2, rate 2/5; net 80; fees 2+1+1.5+1+1 = 6.5;
    # funding 0.5-0.25 = 0.25; PF 150/70; cumulative 0,100,60,30,80,80: DD 70 of peak 100;
    # expectancy 80/5 = 16; avg R (2-1+1.25)/3 = 0.75
    assert brief(data["overall"]) == approx(
        5, 2, 2, 0.4, "80", "6.5", "0.25", 150 / 70, "70", 0.7, "16", "0.75"
    )
    assert data["overall"]["gross_profit"] == "150"
    assert data["overall"]["gross_loss"] == "70"
    assert data["overall"]["breakeven"] == 1

    by_day = data["by_day"]
    assert list(by_day) == ["2025-01-08", "2025-01-09", "2025-01-10"]
    # 100, -40: net 60, fees 3, funding 0.5, PF 2.5, 0,100,60: DD 40 (40%), exp 30, R 0.5
    assert brief(by_day["2025-01-08"]) == approx(
        2, 1, 1, 0.5, "60", "3", "0.5", 2.5, "40", 0.4, "30", "0.5"
    )
    # -30 alone: PF 0/30 = 0, DD 30 from 0 (no fraction), no R
    assert brief(by_day["2025-01-09"]) == approx(
        1, 0, 1, 0.0, "-30", "1.5", "-0.25", 0.0, "30", None, "-30", None
    )
    # 50, 0: one win, one break-even; no loss so no PF; only rises
    assert brief(by_day["2025-01-10"]) == approx(
        2, 1, 0, 0.5, "50", "2", "0", None, "0", None, "25", "1.25"
    )

    by_symbol = data["by_symbol"]
    assert list(by_symbol) == ["BTC/USD:USD", ETH]
    # BTC 100, -30, 0: net 70, fees 4.5, PF 100/30, 0,100,70,70: DD 30 (30%), exp 70/3, R 2
    btc = brief(by_symbol["BTC/USD:USD"])
    assert btc[:10] == approx(3, 1, 1, 1 / 3, "70", "4.5", "0.25", 100 / 30, "30", 0.3)
    assert D(btc[10]) == D(70) / 3
    assert btc[11] == "2"
    # ETH -40, 50: net 10, PF 50/40, 0,-40,10: DD 40 never above 0, exp 5, R (-1+1.25)/2
    assert brief(by_symbol[ETH]) == approx(
        2, 1, 1, 0.5, "10", "2", "0", 1.25, "40", None, "5", "0.125"
    )

    by_strategy = data["by_strategy"]
    assert list(by_strategy) == ["adopted", "ema_cross", "smc"]
    assert brief(by_strategy["adopted"]) == brief(by_day["2025-01-09"])  # t3 alone
    assert brief(by_strategy["ema_cross"]) == brief(by_day["2025-01-08"])  # t1, t2
    assert brief(by_strategy["smc"]) == brief(by_day["2025-01-10"])  # t4, t5


def test_window_bounds_are_inclusive(engine: sa.Engine) -> None:
    insert(
        engine,
        trade("before", closed_at=SINCE_3D - 1, pnl="1"),
        trade("first", closed_at=SINCE_3D, pnl="2"),
        trade("last", closed_at=NOW, pnl="4"),
        trade("after", closed_at=NOW + 1, pnl="8"),
    )
    report = build_report(engine, NOW, 3)
    assert report.overall.count == 2
    assert report.overall.net_pnl == D(6)  # 2 + 4
    assert report.open_trades == 1  # "after" was still open at NOW
    assert list(report.by_day) == ["2025-01-07", "2025-01-10"]


def test_money_is_exact_on_both_backends(engine: sa.Engine) -> None:
    # 0.1 + 0.2 + 0.0000000003 is 0.3000000003 in decimals (a float sum would not be)
    insert(
        engine,
        trade("a", closed_at=at(10, 1), pnl="0.1", fees="0.0000000001"),
        trade("b", closed_at=at(10, 2), pnl="0.2", fees="0.0000000002"),
        trade("c", closed_at=at(10, 3), pnl="0.0000000003"),
    )
    report = build_report(engine, NOW, 1)
    assert report.overall.net_pnl == D("0.3000000003")
    assert report.overall.fees == D("0.0000000003")
    assert report.to_dict()["overall"]["net_pnl"] == "0.3000000003"


def test_no_trades(engine: sa.Engine) -> None:
    report = build_report(engine, NOW, 30)
    assert report.overall.count == 0
    assert (report.by_day, report.by_symbol, report.by_strategy) == ({}, {}, {})
    data = report.to_dict()
    assert data["overall"]["count"] == 0
    assert data["overall"]["win_rate"] is None
    assert data["overall"]["net_pnl"] == "0"
    assert "no closed trades in the last 30 day(s)" in render(report)


def test_open_trades_alone_are_counted_but_not_scored(engine: sa.Engine) -> None:
    insert(engine, trade("o1", closed_at=None), trade("o2", strategy=None, closed_at=None))
    report = build_report(engine, NOW, 30)
    assert (report.overall.count, report.open_trades) == (0, 2)


def test_a_url_and_an_engine_give_the_same_report(url: str, engine: sa.Engine) -> None:
    insert(engine, *week())
    assert build_report(url, NOW, 3) == build_report(engine, NOW, 3)


def test_render_shows_every_group_and_the_totals(engine: sa.Engine) -> None:
    insert(engine, *week())
    text = render(build_report(engine, NOW, 3), "sqlite:///history.db")
    assert text.startswith("history report, last 3 days: 2025-01-07T12:00:00Z ..")
    for heading in ("by day (UTC)", "by symbol", "by strategy", "total"):
        assert f"\n  {heading}" in text
    for key in ("2025-01-08", ETH, "adopted", "ema_cross", "smc"):
        assert f"\n  {key} " in text
    total = next(line for line in text.splitlines() if line.startswith("  all "))
    # 5 trades, 40.0%, net 80.00, fees 6.50, PF 150/70 = 2.14, DD 70.00 (70.0%)
    assert total.split() == ["all", "5", "40.0%", "80.00", "6.50", "2.14", "70.00", "(70.0%)"]
    smc = next(line for line in text.splitlines() if line.startswith("  smc "))
    assert smc.split()[5] == "inf"  # a win and no loss
    assert "open trades: 2" in text
    assert "1 closed trade(s) without realised PnL left out" in text


def test_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        build_report("sqlite://", NOW, 0)


def test_utc_day_boundaries() -> None:
    assert utc_day(JAN_1) == "2025-01-01"
    assert utc_day(JAN_1 - 1) == "2024-12-31"
    assert utc_day(JAN_1 + DAY_MS - 1) == "2025-01-01"
