"""PnL, average entry, fees, margin, liquidation and volume-limited partial fills."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from adapters.sim.accounts import Position, apply_fill, liquidation_price
from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.models import OrderState, Reason
from domain.models import Candle, PositionSide, Side
from tests.adapters.sim.conftest import BTC, ETH, T0, make_engine

D = Decimal


def test_average_entry_realized_and_unrealized_pnl_hand_checked(engine: SimEngine) -> None:
    engine.send_order("acc", BTC, "buy", "mkt", "0.1")  # 0.1 @ 50000, fee 2.5
    engine.set_price(BTC, 52000, ts=T0 + 1)
    engine.send_order("acc", BTC, "buy", "mkt", "0.3")  # 0.3 @ 52000, fee 7.8
    pos = engine.position("acc", BTC)
    assert (pos.qty, pos.entry_price) == (D("0.4"), D(51500))  # (5000 + 15600) / 0.4
    engine.set_price(BTC, 53000, ts=T0 + 2)
    pos = engine.position("acc", BTC)
    assert pos.unrealized_pnl == D(600)  # 0.4 * (53000 - 51500)
    assert pos.initial_margin == D(2120)  # 0.4 * 53000 / 10
    sell = engine.send_order("acc", BTC, "sell", "mkt", "0.2").fills[0]  # fee 5.3
    assert sell.realized_pnl == D(300)
    pos = engine.position("acc", BTC)
    assert (pos.qty, pos.entry_price, pos.realized_pnl) == (D("0.2"), D(51500), D(300))
    flip = engine.send_order("acc", BTC, "sell", "mkt", "0.5").fills[0]  # fee 13.25
    assert flip.realized_pnl == D(300)
    pos = engine.position("acc", BTC)
    assert (pos.qty, pos.side, pos.entry_price) == (D("-0.3"), PositionSide.SHORT, D(53000))
    view = engine.account("acc")
    assert view.fees_paid == D("28.85")
    assert view.realized_pnl == D(600)
    assert view.balance == D("100571.15")
    assert view.equity == view.balance  # the short is at its entry price
    assert pos.to_snapshot().qty == D("0.3")


def test_short_pnl_and_maker_fee(engine: SimEngine) -> None:
    engine.send_order("acc", ETH, "sell", "mkt", "1")  # 3000, taker fee 1.5
    engine.send_order("acc", ETH, "buy", "lmt", "1", limit_price="2900")
    (fill,) = engine.set_price(ETH, "2899.9", ts=T0 + 1)
    assert (fill.price, fill.maker, fill.fee) == (D(2900), True, D("0.58"))
    assert fill.realized_pnl == D(100)
    assert engine.account("acc").balance == D("100000") + 100 - D("1.5") - D("0.58")


def test_apply_fill_pure_function() -> None:
    pos, realized = apply_fill(Position("a", BTC), Side.SELL, D(2), D(10), contract_size=D(1), ts=1)
    assert (pos.qty, pos.entry_price, realized) == (D(-2), D(10), D(0))
    pos, realized = apply_fill(pos, Side.BUY, D(3), D(8), contract_size=D(1), ts=2)
    assert (pos.qty, pos.entry_price, realized, pos.opened_ts) == (D(1), D(8), D(4), 2)
    pos, realized = apply_fill(pos, Side.SELL, D(1), D(9), contract_size=D(1), ts=3)
    assert (pos.qty, pos.entry_price, realized, pos.realized_pnl) == (D(0), D(0), D(1), D(5))


def test_leverage_preference_changes_margin_and_is_capped(engine: SimEngine) -> None:
    engine.send_order("acc", BTC, "buy", "mkt", "1")
    assert engine.position("acc", BTC).initial_margin == D(5000)
    engine.set_leverage("acc", BTC, 25)
    assert engine.position("acc", BTC).initial_margin == D(2000)
    with pytest.raises(ValueError, match="outside"):
        engine.set_leverage("acc", BTC, 51)
    assert engine.leverage("acc", ETH) == D(10)


def _no_fee_engine(balance: str) -> SimEngine:
    config = EngineConfig(
        maker_fee=D(0),
        taker_fee=D(0),
        slippage_bps=D(0),
        impact_bps_per_million=D(0),
        participation=None,
    )
    engine = SimEngine(config=config, seed=3, start_ts=T0)
    engine.create_account("acc", balance)
    engine.set_price(BTC, 50000, ts=T0)
    return engine


def test_liquidation_price_long_and_short_hand_checked() -> None:
    assert liquidation_price(D("0.1"), D(50000), D(1), D("0.01"), D(1000)) == D(4000) / D("0.099")
    assert liquidation_price(D("-0.1"), D(50000), D(1), D("0.01"), D(1000)) == D(6000) / D("0.101")
    assert liquidation_price(D("0.1"), D(50000), D(1), D("0.01"), D(10000)) is None
    engine = _no_fee_engine("1000")
    engine.send_order("acc", BTC, "buy", "mkt", "0.1")
    # 4000 / 0.099 = 40404.04..., reported on the tick grid
    assert engine.position("acc", BTC).liquidation_price == D(40404)


def test_liquidation_closes_position_and_cancels_orders() -> None:
    engine = _no_fee_engine("1000")
    engine.send_order("acc", BTC, "buy", "mkt", "0.1")
    stop = engine.send_order("acc", BTC, "sell", "stp", "0.1", stop_price=30000, reduce_only=True)
    assert engine.set_price(BTC, 40500, ts=T0 + 1) == []
    (fill,) = engine.set_price(BTC, 40400, ts=T0 + 2)
    assert (fill.fill_type, fill.price, fill.qty, fill.side) == (
        "liquidation",
        D(40400),
        D("0.1"),
        Side.SELL,
    )
    assert engine.position("acc", BTC) is None
    assert engine.get_order(stop.order.order_id).reason == Reason.LIQUIDATION
    assert engine.account("acc").balance == D(1000) - D(960)
    assert "liquidation" in [e.kind for e in engine.events_since(0)]


def _candle(t: int, o: float, h: float, low: float, c: float, v: float, sym: str = BTC) -> Candle:
    return Candle(sym, "1m", t, o, h, low, c, v)


def test_partial_fills_against_candle_volume_share_in_priority_order() -> None:
    engine = make_engine(participation=D("0.1"))
    a = engine.send_order("acc", BTC, "buy", "lmt", "0.2", limit_price=49000).order
    b = engine.send_order("acc", BTC, "buy", "lmt", "0.2", limit_price=49000).order
    fills = engine.on_candle(_candle(T0 + 60_000, 50000, 50100, 48900, 49500, 3))  # cap 0.3
    assert [(f.order_id, f.qty) for f in fills] == [(a.order_id, D("0.2")), (b.order_id, D("0.1"))]
    assert engine.get_order(b.order_id).state is OrderState.PARTIALLY_FILLED
    assert engine.get_order(b.order_id).remaining == D("0.1")
    fills = engine.on_candle(_candle(T0 + 120_000, 49500, 49600, 48950, 49000, 0.5))  # cap 0.05
    assert [f.qty for f in fills] == [D("0.05")]
    fills = engine.on_candle(_candle(T0 + 180_000, 49000, 49100, 48800, 49050, 100))
    assert [f.qty for f in fills] == [D("0.05")]
    assert engine.get_order(b.order_id).state is OrderState.FILLED
    assert engine.position("acc", BTC).qty == D("0.4")


def test_participation_disabled_fills_in_full_and_ticks_can_carry_volume() -> None:
    engine = make_engine(participation=None)
    engine.send_order("acc", BTC, "buy", "lmt", "5", limit_price=49000)
    fills = engine.on_candle(_candle(T0 + 60_000, 50000, 50100, 48900, 49500, 0.001))
    assert [f.qty for f in fills] == [D(5)]
    limited = make_engine(participation=D("0.5"))
    limited.send_order("acc", BTC, "buy", "lmt", "1", limit_price=49000)
    assert [f.qty for f in limited.set_price(BTC, 49000, ts=T0 + 1, volume=1)] == [D("0.5")]
    assert [f.qty for f in limited.set_price(BTC, 48999, ts=T0 + 2)] == [D("0.5")]


def test_position_snapshots_are_the_views_snapshots_under_the_given_symbols() -> None:
    engine = make_engine()
    engine.set_leverage("acc", BTC, 5)
    engine.send_order("acc", BTC, "buy", "mkt", "0.5")
    engine.send_order("acc", ETH, "sell", "mkt", "3")
    engine.set_price(BTC, 49_000, ts=T0 + 60_000)
    views = [v.to_snapshot() for v in engine.positions("acc")]
    assert len(views) == 2
    assert engine.position_snapshots("acc") == views
    renamed = engine.position_snapshots("acc", {BTC: "B", ETH: "E"})
    assert [s.symbol for s in renamed] == ["B", "E"]
    assert [replace(s, symbol=v.symbol) for s, v in zip(renamed, views, strict=True)] == views


def test_account_state_is_the_account_views_state() -> None:
    engine = make_engine()
    engine.send_order("acc", BTC, "buy", "mkt", "0.5")
    engine.send_order("acc", ETH, "buy", "lmt", "2", limit_price=2900)  # an order's margin
    engine.set_price(BTC, 49_000, ts=T0 + 60_000)
    assert engine.account_state("acc") == engine.account("acc").to_account_state()
