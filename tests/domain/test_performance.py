"""Run performance against hand-computed values (the arithmetic is in the comments)."""

import json
import math
from decimal import Decimal

import pytest

from domain.metrics import Drawdown, TradeResult
from domain.performance import (
    DAY_MS,
    ClosedTrade,
    EquityPoint,
    cagr,
    calmar,
    daily_closes,
    decimal_text,
    exposure,
    iso_utc,
    performance,
    period_returns,
    sharpe,
    sortino,
    total_return,
    trades_per_day,
    window_curve,
)

D = Decimal
H = 3_600_000
DAY0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a UTC midnight


def point(at: int, equity: str) -> EquityPoint:
    return EquityPoint(at, D(equity))


def trade(
    position_id: str,
    opened_at: int,
    closed_at: int,
    pnl: str,
    *,
    symbol: str = "BTC/USD:USD",
    fees: str = "0",
    funding: str = "0",
    r: str | None = None,
) -> ClosedTrade:
    return ClosedTrade(
        position_id=position_id,
        symbol=symbol,
        side="long",
        strategy="trend",
        opened_at=opened_at,
        closed_at=closed_at,
        qty=D("0.1"),
        entry_price=D("40000"),
        exit_price=D("40300"),
        fees=D(fees),
        funding=D(funding),
        realized_pnl=D(pnl),
        r_multiple=None if r is None else D(r),
        exit_reason="take_profit",
    )


# ---- closed trades ---------------------------------------------------------------------------


def test_closed_trade_result_carries_pnl_fees_funding_and_r() -> None:
    t = trade("p1", DAY0, DAY0 + H, "29.5", fees="0.4", funding="0.1", r="1.2")
    assert t.result() == TradeResult(D("29.5"), D("0.4"), D("0.1"), D("1.2"))
    assert trade("p2", DAY0, DAY0, "-1").result().r_multiple is None


def test_closed_trade_rejects_an_unknown_side_and_a_close_before_the_open() -> None:
    good = trade("p1", DAY0, DAY0 + H, "1")
    with pytest.raises(ValueError, match="side"):
        ClosedTrade(**{**_fields(good), "side": "buy"})
    with pytest.raises(ValueError, match="before it opened"):
        trade("p1", DAY0 + H, DAY0, "1")


def _fields(t: ClosedTrade) -> dict[str, object]:
    return {name: getattr(t, name) for name in ClosedTrade.__slots__}


# ---- daily closes and returns ----------------------------------------------------------------


def test_daily_closes_take_the_last_sample_of_each_day_and_carry_empty_days_forward() -> None:
    start, end = DAY0 + 12 * H, DAY0 + 3 * DAY_MS + 6 * H
    points = [
        point(DAY0 + 3 * DAY_MS + 7 * H, "999"),  # after the end: never read
        point(DAY0 + DAY_MS + H, "130"),
        point(DAY0 + 6 * H, "90"),  # before the start: the equity at the start
        point(DAY0 + 18 * H, "110"),
        point(DAY0 + DAY_MS, "120"),  # exactly at midnight: closes day 1
        point(DAY0 + 3 * DAY_MS + H, "140"),
    ]
    # start 12:00 day 1 -> 90; midnight 1/2 -> 120; midnight 2/3 -> 130 (day 2 had a sample at
    # 01:00); midnight 3/4 -> 130 (day 3 had none: carried); end 06:00 day 4 -> 140
    assert daily_closes(points, start, end) == [D(90), D(120), D(130), D(130), D(140)]


def test_daily_closes_edges() -> None:
    points = [point(DAY0 + H, "100"), point(DAY0 + DAY_MS + H, "105")]
    # no sample before the start: the first sample stands for it
    assert daily_closes(points, DAY0, DAY0 + DAY_MS) == [D(100), D(100)]
    # a window ending at a midnight counts that midnight once
    assert daily_closes(points, DAY0, DAY0 + 2 * DAY_MS) == [D(100), D(100), D(105)]
    # an empty window: only the start
    assert daily_closes(points, DAY0 + 2 * DAY_MS, DAY0 + 2 * DAY_MS) == [D(105)]
    assert daily_closes([], DAY0, DAY0 + 5 * DAY_MS) == []


def test_window_curve_starts_at_the_start_equity_and_keeps_the_window_in_time_order() -> None:
    points = [point(DAY0 + 3 * H, "103"), point(DAY0 - H, "1"), point(DAY0 + H, "101")]
    points += [point(DAY0 + 4 * H, "7"), point(DAY0, "100.5")]
    curve = window_curve(points, DAY0, DAY0 + 3 * H, D(100))
    # the sample before the start and the one after the end are left out
    assert curve == [
        point(DAY0, "100"),
        point(DAY0, "100.5"),
        point(DAY0 + H, "101"),
        point(DAY0 + 3 * H, "103"),
    ]
    assert window_curve([], DAY0, DAY0 + H, D(5)) == [point(DAY0, "5")]


def test_period_returns_are_simple_returns() -> None:
    # 100 -> 101 (+1%) -> 98.98 (101 * 0.98: -2%) -> 101.9494 (98.98 * 1.03: +3%)
    values = [D(100), D(101), D("98.98"), D("101.9494")]
    assert period_returns(values) == pytest.approx([0.01, -0.02, 0.03])
    assert period_returns([D(100)]) == []
    assert period_returns([]) == []


def test_period_returns_stop_when_the_equity_is_gone() -> None:
    # 100 -> 50: -0.5; 50 -> 0: -1.0; from 0 nothing is a return any more
    assert period_returns([D(100), D(50), D(0), D(0), D(10)]) == [-0.5, -1.0]
    assert period_returns([D(-5), D(10)]) == []


# ---- ratios ----------------------------------------------------------------------------------


def test_sharpe_by_hand() -> None:
    # r = 0.01, -0.02, 0.03; mean = 0.02 / 3 = 2/300
    # deviations: 1/300, -8/300, 7/300; squares sum = (1 + 64 + 49) / 90000 = 114/90000
    # sample variance = 114/90000 / 2 = 57/90000; std = sqrt(57) / 300
    # mean / std = 2 / sqrt(57) = 0.26491; * sqrt(365) = 2 * sqrt(365 / 57) = 5.0611
    assert sharpe([0.01, -0.02, 0.03]) == pytest.approx(2 * math.sqrt(365 / 57))
    assert sharpe([0.01, -0.02, 0.03]) == pytest.approx(5.0611, abs=1e-4)
    # r = 0.01, 0.03: mean 0.02, std = sqrt(0.01^2 + 0.01^2) = 0.01 * sqrt(2)
    # mean / std = sqrt(2); over 252 periods: sqrt(2 * 252) = sqrt(504) = 22.4499
    assert sharpe([0.01, 0.03], periods_per_year=252) == pytest.approx(math.sqrt(504))


def test_sharpe_is_none_when_meaningless() -> None:
    assert sharpe([]) is None
    assert sharpe([0.05]) is None  # one return: no sample deviation
    assert sharpe([0.01, 0.01, 0.01]) is None  # std 0 (exactly, not a rounding residue)
    assert sharpe([0.0, 0.0]) is None


def test_sortino_by_hand() -> None:
    # r = 0.01, -0.02, 0.03: mean = 0.02 / 3
    # downside: min(r, 0)^2 = 0, 0.0004, 0 -> mean over all 3 = 0.0004 / 3
    # downside deviation = 0.02 / sqrt(3); mean / dd = (0.02 / 3) / (0.02 / sqrt(3)) = 1/sqrt(3)
    # * sqrt(365) = sqrt(365 / 3) = 11.0303
    assert sortino([0.01, -0.02, 0.03]) == pytest.approx(math.sqrt(365 / 3))
    assert sortino([0.01, -0.02, 0.03]) == pytest.approx(11.0303, abs=1e-4)
    # only losses: r = -0.01, -0.03: mean -0.02; dd = sqrt((0.0001 + 0.0009) / 2) = sqrt(0.0005)
    # mean / dd = -sqrt(0.0004 / 0.0005) = -sqrt(0.8); * sqrt(365) = -sqrt(292)
    assert sortino([-0.01, -0.03]) == pytest.approx(-math.sqrt(292))
    # 12 periods a year: -sqrt(0.8 * 12) = -sqrt(9.6)
    assert sortino([-0.01, -0.03], periods_per_year=12) == pytest.approx(-math.sqrt(9.6))


def test_sortino_is_none_without_a_loss_or_with_one_return() -> None:
    assert sortino([0.01, 0.02, 0.0]) is None
    assert sortino([-0.05]) is None
    assert sortino([]) is None


def test_total_return() -> None:
    assert total_return(D(100), D(125)) == pytest.approx(0.25)
    assert total_return(D(100), D(80)) == pytest.approx(-0.2)
    assert total_return(D(100), D(0)) == -1.0
    assert total_return(D(0), D(10)) is None
    assert total_return(D(-1), D(10)) is None


def test_cagr() -> None:
    # 100 -> 121 over two years: sqrt(1.21) - 1 = 0.1
    assert cagr(D(100), D(121), 730) == pytest.approx(0.1)
    # 100 -> 50 over one year: -0.5
    assert cagr(D(100), D(50), 365) == pytest.approx(-0.5)
    # 100 -> 110 over half a year: 1.1^2 - 1 = 0.21
    assert cagr(D(100), D(110), 182.5) == pytest.approx(0.21)
    assert cagr(D(100), D(0), 10) == -1.0
    assert cagr(D(100), D(-5), 10) == -1.0
    assert cagr(D(0), D(100), 10) is None
    assert cagr(D(100), D(110), 0) is None
    # 1000x in a thousandth of a day: 1000^365000 overflows a float
    assert cagr(D(1), D(1000), 0.001) is None


def test_calmar() -> None:
    assert calmar(0.1, 0.25) == pytest.approx(0.4)
    assert calmar(-0.2, 0.5) == pytest.approx(-0.4)
    assert calmar(0.1, None) is None
    assert calmar(0.1, 0.0) is None
    assert calmar(None, 0.2) is None


def test_exposure_merges_overlaps_and_clips_to_the_window() -> None:
    intervals = [
        (90, 150),  # clipped to 90..100: 10
        (20, 40),  # overlaps the next: 10..40 together = 30
        (10, 30),
        (-50, 5),  # clipped to 0..5: 5
        (200, 300),  # outside: 0
        (60, 60),  # empty: 0
        (12, 18),  # inside 10..30: already counted
    ]
    # (5 + 30 + 10) / 100
    assert exposure(intervals, 0, 100) == pytest.approx(0.45)
    assert exposure([(-10, 500)], 0, 100) == 1.0
    assert exposure([], 0, 100) == 0.0
    assert exposure([(0, 10)], 100, 100) is None
    assert exposure([(0, 10)], 100, 50) is None


def test_trades_per_day() -> None:
    assert trades_per_day(3, DAY0, DAY0 + 2 * DAY_MS) == pytest.approx(1.5)
    assert trades_per_day(1, DAY0, DAY0 + 12 * H) == pytest.approx(2.0)
    assert trades_per_day(0, DAY0, DAY0 + DAY_MS) == 0.0
    assert trades_per_day(5, DAY0, DAY0) is None


def test_text_helpers() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(DAY0 + 13 * H + 123) == "2024-01-01T13:00:00.123Z"
    assert decimal_text(D("1.500")) == "1.5"
    assert decimal_text(D("1E+2")) == "100"
    assert decimal_text(D("-0.00")) == "0"
    assert decimal_text(None) is None


# ---- the whole summary -----------------------------------------------------------------------


START, END = DAY0, DAY0 + 4 * DAY_MS
EQUITY = [
    point(DAY0 - H, "1"),  # before the window: ignored
    point(DAY0 + 2 * DAY_MS + 6 * H, "900"),  # intraday trough, recovered by the next close
    point(DAY0 + DAY_MS, "1050"),
    point(DAY0 + 2 * DAY_MS, "1000"),
    point(DAY0 + 3 * DAY_MS, "1100"),
    point(DAY0 + 4 * DAY_MS, "1045"),
    point(DAY0 + 5 * DAY_MS, "5"),  # after the window: ignored
]
TRADES = [
    trade("c", DAY0 + 3 * DAY_MS, DAY0 + 3 * DAY_MS + 12 * H, "0", fees="0.5"),
    trade("b", DAY0 + 3 * H, DAY0 + DAY_MS, "-20", symbol="ETH/USD:USD", fees="1", r="-1"),
    trade("a", DAY0 + H, DAY0 + 5 * H, "30", fees="1", funding="0.5", r="1.5"),
]


def test_performance_by_hand() -> None:
    perf = performance(TRADES, EQUITY, start_ms=START, end_ms=END, start_equity=D(1000))
    assert perf.end_equity == D(1045)
    assert perf.total_return == pytest.approx(0.045)  # 1045 / 1000 - 1
    assert perf.days == 4.0
    assert perf.cagr == pytest.approx(1.045 ** (365 / 4) - 1)
    # mark-to-market curve 1000, 1050, 1000, 900, 1100, 1045: peak 1050 -> trough 900
    # = 150 = 1/7 of the peak (the later 1100 -> 1045 is only 55, 5%)
    assert perf.max_drawdown.amount == D(150)
    assert perf.max_drawdown.fraction == pytest.approx(1 / 7)
    assert perf.calmar == pytest.approx((1.045 ** (365 / 4) - 1) * 7)
    # daily closes 1000, 1050, 1000, 1100, 1045 -> 0.05, -1/21, 0.1, -0.05 (the 900 is intraday)
    daily = [0.05, -1 / 21, 0.1, -0.05]
    assert perf.return_periods == 4
    assert perf.sharpe == pytest.approx(sharpe(daily))
    assert perf.sortino == pytest.approx(sortino(daily))
    # mean = 0.0523810 / 4 = 0.0130952; deviations 0.0369048, -0.0607143, 0.0869048, -0.0630952
    # squares sum 0.0165816 / 3 = 0.0055272; std 0.0743452; 0.176141 * sqrt(365) = 3.36517
    assert perf.sharpe == pytest.approx(3.36517, abs=1e-4)
    # open 01:00 .. 24:00 day 1 (a and b overlap) + 12 h on day 4 = 35 h of 96 h
    assert perf.exposure == pytest.approx(35 / 96)
    assert perf.trades_per_day == pytest.approx(0.75)  # 3 trades / 4 days
    stats = perf.trades
    assert (stats.count, stats.wins, stats.losses, stats.breakeven) == (3, 1, 1, 1)
    assert stats.win_rate == pytest.approx(1 / 3)
    assert stats.profit_factor == pytest.approx(1.5)  # 30 / 20
    assert stats.expectancy == D(10) / 3  # (30 - 20 + 0) / 3
    assert stats.avg_r == D("0.25")  # (1.5 - 1) / 2; c has no R
    assert (stats.fees, stats.funding) == (D("2.5"), D("0.5"))
    # closed-trade drawdown follows close order a (+30), b (-20), c: 1000 -> 1030 -> 1010
    # = 20 / 1030 (in the given order c, b, a it would have been 20 / 1000)
    assert stats.max_drawdown.fraction == pytest.approx(20 / 1030)


def test_performance_to_dict_is_json_safe() -> None:
    perf = performance(TRADES, EQUITY, start_ms=START, end_ms=END, start_equity=D("1000.00"))
    data = json.loads(json.dumps(perf.to_dict(), allow_nan=False))
    assert data["window"] == {
        "start": START,
        "end": END,
        "start_utc": "2024-01-01T00:00:00.000Z",
        "end_utc": "2024-01-05T00:00:00.000Z",
        "days": 4.0,
    }
    assert data["start_equity"] == "1000"
    assert data["end_equity"] == "1045"
    assert data["max_drawdown"] == {"amount": "150", "fraction": pytest.approx(1 / 7)}
    assert data["fees"] == "2.5"
    assert data["funding"] == "0.5"
    assert data["net_pnl"] == "10"
    assert data["avg_r"] == "0.25"
    assert data["expectancy"].startswith("3.3333")
    assert data["profit_factor"] == pytest.approx(1.5)
    assert data["trade_count"] == 3
    assert data["exposure"] == pytest.approx(35 / 96)


def test_performance_without_trades_or_samples() -> None:
    perf = performance([], [], start_ms=START, end_ms=END, start_equity=D(1000))
    assert perf.end_equity == D(1000)
    assert perf.total_return == 0.0
    assert perf.cagr == 0.0
    assert perf.return_periods == 4  # four flat days
    assert perf.sharpe is None  # all returns 0: no deviation
    assert perf.sortino is None  # no losing day
    assert perf.max_drawdown == Drawdown(D(0), None)
    assert perf.calmar is None
    assert perf.exposure == 0.0
    assert perf.trades_per_day == 0.0
    assert perf.trades.count == 0
    assert perf.trades.win_rate is None
    data = perf.to_dict()
    assert data["win_rate"] is None
    assert data["expectancy"] is None
    json.dumps(data, allow_nan=False)


def test_performance_of_an_empty_window() -> None:
    perf = performance(TRADES, EQUITY, start_ms=START, end_ms=START, start_equity=D(1000))
    assert perf.cagr is None
    assert perf.exposure is None
    assert perf.trades_per_day is None
    assert perf.return_periods == 0
    assert perf.sharpe is None


def test_performance_when_the_equity_goes_to_zero() -> None:
    equity = [point(DAY0 + DAY_MS, "400"), point(DAY0 + 2 * DAY_MS, "0")]
    perf = performance([], equity, start_ms=START, end_ms=END, start_equity=D(1000))
    assert perf.total_return == -1.0
    assert perf.cagr == -1.0
    assert perf.max_drawdown.fraction == 1.0
    assert perf.calmar == -1.0
    # closes 1000, 400, 0, 0, 0: returns -0.6, -1.0 and then nothing
    assert perf.return_periods == 2
    # mean -0.8, std = sqrt(0.2^2 * 2 / 1) = 0.2 * sqrt(2): -0.8 / 0.28284 = -2.8284 * 19.105
    assert perf.sharpe == pytest.approx(-4 / math.sqrt(2) * math.sqrt(365))
    # downside deviation sqrt((0.36 + 1) / 2) = sqrt(0.68): -0.8 / sqrt(0.68) * sqrt(365)
    assert perf.sortino == pytest.approx(-0.8 / math.sqrt(0.68) * math.sqrt(365))
