"""A symbol with no order and no position skips the candle walk: the result is the same."""

from __future__ import annotations

from decimal import Decimal

from adapters.sim.engine import SimEngine
from domain.models import Candle
from tests.adapters.sim.conftest import BTC, ETH, T0, make_engine

MINUTE = 60_000


def _minute(k: int, btc: tuple[float, ...], eth: tuple[float, ...]) -> list[Candle]:
    return [
        Candle(BTC, "1m", T0 + k * MINUTE, *btc, 10.0),
        Candle(ETH, "1m", T0 + k * MINUTE, *eth, 10.0),
    ]


def _state(engine: SimEngine) -> tuple[object, ...]:
    return (
        engine.last_price(BTC),
        engine.mark_price(BTC),
        engine.last_price(ETH),
        engine.ohlcv(ETH),
        [(f.symbol, f.price, f.qty, f.ts) for f in engine.fills()],
        engine.account("acc").equity,
    )


def test_an_idle_symbol_ends_at_the_close_with_its_bar_recorded() -> None:
    engine = make_engine()
    engine.on_candles(_minute(1, (50000, 50500, 49000, 49800), (3000, 3010, 2990, 3005)))
    assert engine.last_price(BTC) == engine.mark_price(BTC) == Decimal(49800)
    assert engine.last_price(ETH) == Decimal("3005.0")
    bar = engine.ohlcv(BTC)[-1]
    assert (bar.open, bar.high, bar.low, bar.close) == (50000, 50500, 49000, 49800)


def test_orders_on_one_symbol_still_fill_on_the_path_while_the_other_is_idle() -> None:
    engine = make_engine()
    engine.send_order("acc", ETH, "buy", "mkt", "1")
    engine.send_order("acc", ETH, "sell", "stp", "1", stop_price=2950, reduce_only=True)
    fills = engine.on_candles(_minute(1, (50000, 50500, 49000, 49800), (3000, 3010, 2940, 3005)))
    assert [(f.symbol, f.price, f.ts) for f in fills] == [(ETH, Decimal("2950.0"), T0 + 80_000)]
    # the idle walk of BTC leaves everything as a full walk would
    walked = make_engine()
    walked.send_order("acc", ETH, "buy", "mkt", "1")
    walked.send_order("acc", ETH, "sell", "stp", "1", stop_price=2950, reduce_only=True)
    walked._idle = lambda symbol: False  # type: ignore[method-assign]
    walked.on_candles(_minute(1, (50000, 50500, 49000, 49800), (3000, 3010, 2940, 3005)))
    assert _state(engine) == _state(walked)
