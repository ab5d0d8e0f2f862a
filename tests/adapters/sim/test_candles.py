"""The deterministic intra-candle path and what it means for fills."""

from __future__ import annotations

from decimal import Decimal

from adapters.sim.engine import SimEngine
from adapters.sim.matching import candle_path
from adapters.sim.models import OrderState, Reason
from domain.models import Candle
from tests.adapters.sim.conftest import BTC, T0

D = Decimal
T1 = T0 + 60_000


def test_candle_path_order() -> None:
    assert candle_path(D(10), D(12), D(9), D(11)) == [D(10), D(9), D(12), D(11)]
    assert candle_path(D(10), D(12), D(9), D(10)) == [D(10), D(9), D(12), D(10)]
    assert candle_path(D(10), D(12), D(9), D(9.5)) == [D(10), D(12), D(9), D(9.5)]


def _bracket(engine: SimEngine) -> tuple[str, str]:
    engine.send_order("acc", BTC, "buy", "mkt", "0.1")
    stop = engine.send_order("acc", BTC, "sell", "stp", "0.1", stop_price=49500, reduce_only=True)
    tp = engine.send_order(
        "acc", BTC, "sell", "take_profit", "0.1", stop_price=50800, reduce_only=True
    )
    return stop.order.order_id, tp.order.order_id


def test_up_candle_visits_low_first_so_stop_wins(engine: SimEngine) -> None:
    stop, tp = _bracket(engine)
    fills = engine.on_candle(Candle(BTC, "1m", T1, 50000, 51000, 49000, 50500, 10))
    assert [(f.order_id, f.price, f.ts) for f in fills] == [(stop, D(49500), T1 + 20_000)]
    assert engine.get_order(tp).state is OrderState.CANCELLED
    assert engine.get_order(tp).reason == Reason.WOULD_NOT_REDUCE


def test_down_candle_visits_high_first_so_take_profit_wins(engine: SimEngine) -> None:
    stop, tp = _bracket(engine)
    fills = engine.on_candle(Candle(BTC, "1m", T1, 50000, 51000, 49000, 49800, 10))
    assert [(f.order_id, f.price, f.ts) for f in fills] == [(tp, D(50800), T1 + 20_000)]
    assert engine.get_order(stop).state is OrderState.CANCELLED


def test_gap_open_fills_stop_at_the_open(engine: SimEngine) -> None:
    stop, _ = _bracket(engine)
    fills = engine.on_candle(Candle(BTC, "1m", T1, 48000, 48500, 47500, 48200, 10))
    assert [(f.order_id, f.price, f.ts) for f in fills] == [(stop, D(48000), T1)]


def test_levels_inside_a_leg_fire_nearest_first(engine: SimEngine) -> None:
    near = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49800).order
    far = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49200).order
    fills = engine.on_candle(Candle(BTC, "1m", T1, 50000, 50100, 49000, 49100, 10))
    assert [f.order_id for f in fills] == [near.order_id, far.order_id]
    assert engine.last_price(BTC) == D(49100)


def test_candles_and_ticks_feed_ohlcv_and_tickers(engine: SimEngine) -> None:
    engine.on_candle(Candle(BTC, "1m", T1, 50000, 51000, 49000, 50500, 10))
    engine.set_price(BTC, 50600, ts=T1 + 60_000, volume="0.5")
    engine.set_price(BTC, 50400, ts=T1 + 61_000, volume="0.25")
    bars = engine.ohlcv(BTC, since=T1)
    assert [(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (T1, D(50000), D(51000), D(49000), D(50500), D(10)),
        (T1 + 60_000, D(50600), D(50600), D(50400), D(50400), D("0.75")),
    ]
    ticker = engine.ticker(BTC)
    assert ticker.last == D(50400) and ticker.high24h == D(51000) and ticker.low24h == D(49000)
    assert ticker.open24h == D(50000)
    assert ticker.bid < ticker.last < ticker.ask
    assert ticker.vol24h == D("10.75")
