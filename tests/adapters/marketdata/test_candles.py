"""CandleBuilder: trades to closed 1m candles, minute boundaries, UTC aggregation, repair."""

from __future__ import annotations

import pytest

from adapters.marketdata import CandleBuilder, CandleClosed, floor_time, timeframe_ms
from domain.models import Candle

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
M = 60_000


def ohlcv(events: list[CandleClosed]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        c = e.candle
        out.append((e.timeframe, c.open_time, c.open, c.high, c.low, c.close, c.volume))
    return out


def opens(events: list[CandleClosed], timeframe: str = "1m") -> list[int]:
    return [e.candle.open_time for e in events if e.timeframe == timeframe]


def rest_minute(minute: int, price: float = 50.0, symbol: str = "PF_XBTUSD") -> Candle:
    return Candle(symbol, "1m", T0 + minute * M, price, price + 1, price - 1, price, 2.0)


def test_trades_make_ohlcv_and_a_trade_of_a_later_minute_closes_it() -> None:
    b = CandleBuilder("BTC/USD:USD")
    assert b.on_trade(T0 + 1_000, 100.0, 1.0) == []
    assert b.on_trade(T0 + 2_000, 105.0, 2.0) == []
    assert b.on_trade(T0 + 3_000, 99.0, 0.5) == []
    assert b.on_trade(T0 + M - 1, 101.0, 1.0) == []
    closed = b.on_trade(T0 + M, 102.0, 1.0)
    assert closed == [
        CandleClosed(
            "BTC/USD:USD", "1m", Candle("BTC/USD:USD", "1m", T0, 100.0, 105.0, 99.0, 101.0, 4.5)
        )
    ]
    assert closed[0].source == "live"


def test_open_and_close_follow_trade_time_not_arrival_order() -> None:
    b = CandleBuilder("X")
    for offset, price in ((30_000, 2.0), (10_000, 1.0), (50_000, 3.0), (40_000, 4.0)):
        b.on_trade(T0 + offset, price, 1.0)
    assert ohlcv(b.on_clock(T0 + M + 2_000)) == [("1m", T0, 1.0, 4.0, 1.0, 3.0, 4.0)]


def test_clock_closes_a_minute_only_after_the_grace() -> None:
    b = CandleBuilder("X", grace_ms=2_000)
    b.on_trade(T0 + 5_000, 10.0, 1.0)
    assert b.on_clock(T0 + M + 1_999) == []
    assert opens(b.on_clock(T0 + M + 2_000)) == [T0]
    assert b.on_clock(T0 + 10 * M) == []


def test_a_late_trade_is_dropped_and_nothing_is_emitted_twice() -> None:
    b = CandleBuilder("X", grace_ms=0)
    b.on_trade(T0 + 5_000, 10.0, 1.0)
    assert opens(b.on_clock(T0 + M)) == [T0]
    assert b.on_trade(T0 + 59_000, 11.0, 1.0) == []
    assert b.late_trades == 1
    assert b.on_clock(T0 + 5 * M) == []


def test_minutes_without_trades_make_no_candle() -> None:
    b = CandleBuilder("X", grace_ms=0)
    b.on_trade(T0 + 1_000, 10.0, 1.0)
    assert opens(b.on_trade(T0 + 3 * M + 1_000, 12.0, 1.0)) == [T0]
    assert opens(b.on_clock(T0 + 10 * M)) == [T0 + 3 * M]


def test_higher_timeframes_aggregate_closed_minutes_on_utc_boundaries() -> None:
    b = CandleBuilder("X", ("1h", "5m"), grace_ms=1_000)
    assert b.timeframes == ("1m", "5m", "1h")
    out: list[CandleClosed] = []
    for k in range(-3, 66):  # from 23:57 (a partial 5m bucket) to 01:05
        out += b.on_trade(T0 + k * M + 5_000, 100.0 + k, 1.0)
    out += b.on_clock(T0 + 66 * M + 1_000)

    assert opens(out) == [T0 + k * M for k in range(-3, 66)]
    assert opens(out, "5m") == [T0 + i * 5 * M for i in range(13)]  # 23:55 was seen in part
    first_5m = next(e for e in out if e.timeframe == "5m")
    assert ohlcv([first_5m]) == [("5m", T0, 100.0, 104.0, 100.0, 104.0, 5.0)]
    assert ohlcv([e for e in out if e.timeframe == "1h"]) == [
        ("1h", T0, 100.0, 159.0, 100.0, 159.0, 60.0)
    ]
    # candles closing together come longest first: an analysis at the 1m close of 01:00 sees
    # the hour and the 5 minutes that closed with it
    closes = [(e.candle.open_time + timeframe_ms(e.timeframe), e.timeframe) for e in out]
    assert closes == sorted(closes, key=lambda c: (c[0], -timeframe_ms(c[1])))
    index = {(e.timeframe, e.candle.open_time): i for i, e in enumerate(out)}
    assert index[("1h", T0)] < index[("5m", T0 + 55 * M)] < index[("1m", T0 + 59 * M)]
    assert index[("1m", T0 + 59 * M)] == index[("1h", T0)] + 2


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "4h", "1d"])
def test_buckets_are_aligned_to_utc(timeframe: str) -> None:
    step = timeframe_ms(timeframe)
    ts = T0 + 7 * 3_600_000 + 23 * M + 17_000  # 07:23:17
    assert floor_time(ts, step) % step == 0
    assert T0 <= floor_time(ts, step) <= ts < floor_time(ts, step) + step


def test_unsupported_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported timeframe"):
        CandleBuilder("X", ("1w",))


def test_repair_fills_the_gap_in_order_then_releases_held_live_candles() -> None:
    b = CandleBuilder("BTC", ("1m", "5m"), grace_ms=0)
    b.suspend()
    assert b.on_trade(T0 + 10 * M, 1.0, 1.0) == []  # suspended: ignored
    b.resume(T0 + 10 * M + 30_000)
    assert b.live_from == T0 + 11 * M
    assert b.on_trade(T0 + 10 * M + 40_000, 1.0, 1.0) == []  # before live_from
    assert b.on_trade(T0 + 11 * M + 1_000, 70.0, 1.0) == []
    assert b.on_trade(T0 + 12 * M + 1_000, 71.0, 1.0) == []  # closes 11: held

    assert b.repair_due(T0 + 10 * M)
    assert b.repair_plan(5, T0 + 10 * M) == {"1m": T0 + 5 * M, "5m": T0 - 15 * M}
    history = {
        "1m": [rest_minute(k) for k in range(5, 12)],  # 10 and 11 are not closed yet
        "5m": [
            Candle("PF_XBTUSD", "5m", T0 + k * M, 9.0, 9.0, 9.0, 9.0, 1.0)
            for k in range(-15, 15, 5)
        ],
    }
    first = b.complete_repair(history, T0 + 10 * M)
    assert [(e.timeframe, e.candle.open_time, e.source) for e in first] == [
        *(("5m", T0 + k * M, "rest") for k in range(-15, 10, 5)),
        *(("1m", T0 + k * M, "rest") for k in range(5, 10)),
    ]
    assert {e.candle.symbol for e in first} == {"BTC"}
    assert b.repair_pending

    assert not b.repair_due(T0 + 10 * M)
    assert b.repair_plan(5, T0 + 12 * M) == {"1m": T0 + 10 * M}
    second = b.complete_repair({"1m": [rest_minute(10), rest_minute(11)]}, T0 + 12 * M)
    assert [(e.timeframe, e.candle.open_time, e.source) for e in second] == [
        ("1m", T0 + 10 * M, "rest"),
        ("1m", T0 + 11 * M, "live"),
    ]
    assert second[1].candle.open == 70.0
    assert not b.repair_pending

    rest = b.on_clock(T0 + 15 * M)
    assert [(e.timeframe, e.candle.open_time, e.source) for e in rest] == [
        ("1m", T0 + 12 * M, "live"),
        ("5m", T0 + 10 * M, "rest"),  # it holds a repaired minute
    ]
    assert ohlcv(rest[1:]) == [("5m", T0 + 10 * M, 50.0, 71.0, 49.0, 71.0, 4.0)]


def test_repair_never_repeats_an_emitted_candle() -> None:
    b = CandleBuilder("X", grace_ms=0)
    b.on_trade(T0 + 1_000, 10.0, 1.0)
    b.on_trade(T0 + M + 1_000, 11.0, 1.0)  # closes 0
    b.suspend()
    b.resume(T0 + 3 * M + 10_000)
    assert b.repair_plan(100, T0 + 4 * M) == {"1m": T0 + M}
    out = b.complete_repair({"1m": [rest_minute(k) for k in range(4)]}, T0 + 4 * M)
    assert opens(out) == [T0 + k * M for k in range(1, 4)]
    assert b.duplicates == 1


def test_a_suspended_builder_does_not_close_a_bucket_with_a_hole() -> None:
    b = CandleBuilder("X", ("5m",), grace_ms=0)
    b.on_trade(T0 + 1_000, 10.0, 1.0)
    b.on_trade(T0 + M + 1_000, 11.0, 1.0)
    b.suspend()
    assert b.on_clock(T0 + 20 * M) == []
    b.resume(T0 + 20 * M)
    out = b.complete_repair({"1m": [rest_minute(k) for k in range(1, 21)]}, T0 + 21 * M)
    fives = [e for e in out if e.timeframe == "5m"]
    assert [e.candle.open_time for e in fives] == [T0 + k * M for k in (0, 5, 10, 15)]
    assert fives[0].candle.volume == 1.0 + 4 * 2.0  # live minute 0 and repaired 1..4


def test_first_repair_without_history_reaches_back_to_the_largest_bucket() -> None:
    b = CandleBuilder("X", ("1m", "4h"), grace_ms=0)
    b.suspend()
    b.resume(T0 + 5 * 3_600_000 + 10 * M)  # 05:10 -> coverage starts at 04:00
    plan = b.repair_plan(30, T0 + 5 * 3_600_000 + 10 * M)
    assert plan == {"1m": T0 + 4 * 3_600_000, "4h": T0 + 4 * 3_600_000 - 30 * 4 * 3_600_000}
