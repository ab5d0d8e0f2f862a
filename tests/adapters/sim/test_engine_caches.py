"""What the engine and the in-process port remember gives what computing afresh gives."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.inprocess_mapping import _to_order, to_fill, to_order
from adapters.sim.instruments import default_instruments

D = Decimal
START = 1_735_689_600_000


def engine_with_positions() -> SimEngine:
    engine = SimEngine(default_instruments(), seed=3, start_ts=START)
    engine.create_account("a", D(20_000))
    for symbol, side in (("PF_XBTUSD", "buy"), ("PF_ETHUSD", "sell"), ("PF_LTCUSD", "buy")):
        inst = engine.instruments[symbol].instrument
        engine.send_order("a", symbol, side, "mkt", inst.lot_size * 200)
    return engine


def fresh_liquidation_price(engine: SimEngine, symbol: str) -> Decimal | None:
    engine._liq_terms.clear()
    return engine._liquidation_price(engine._positions[("a", symbol)])


def test_liquidation_prices_follow_marks_positions_and_balance() -> None:
    engine = engine_with_positions()
    symbols = ("PF_XBTUSD", "PF_ETHUSD", "PF_LTCUSD")

    def check() -> None:
        for symbol in symbols:
            cached = engine._liquidation_price(engine._positions[("a", symbol)])
            assert cached == fresh_liquidation_price(engine, symbol)
            assert engine._liquidation_price(engine._positions[("a", symbol)]) == cached

    check()
    engine.set_price("PF_ETHUSD", engine.last_price("PF_ETHUSD") * D("1.05"))  # a mark moves
    check()
    inst = engine.instruments["PF_XBTUSD"].instrument
    engine.send_order("a", "PF_XBTUSD", "buy", "mkt", inst.lot_size * 100)  # a position grows
    check()
    engine.deposit("a", D(-5_000))  # the balance changes
    check()


def test_order_and_fill_views_follow_the_engine_objects() -> None:
    engine = engine_with_positions()
    inst = engine.instruments["PF_XBTUSD"].instrument
    result = engine.send_order(
        "a", "PF_XBTUSD", "sell", "stp", inst.lot_size * 100, stop_price=D(1000), reduce_only=True
    )
    order = result.order
    assert order is not None
    first = to_order(order, "BTC/USD:USD")
    assert first == _to_order(order, "BTC/USD:USD")
    assert to_order(order, "BTC/USD:USD") is first  # remembered
    assert to_order(order, "OTHER").symbol == "OTHER"  # another symbol: another view
    cancelled = engine.cancel_order("a", order.order_id).order
    assert cancelled is not None
    assert to_order(cancelled, "BTC/USD:USD") == _to_order(cancelled, "BTC/USD:USD")
    assert to_order(cancelled, "BTC/USD:USD").status != first.status
    for fill in engine.fills("a"):
        expected = replace(fill.to_fill(), symbol="X")
        assert to_fill(fill, "X") == expected
        assert to_fill(fill, "X") == expected


def test_position_snapshots_are_the_views_under_unified_symbols() -> None:
    engine = engine_with_positions()
    port = InProcessExchange(engine, "a")
    unified = {s: spec.instrument.unified_symbol for s, spec in engine.instruments.items()}
    expected = [
        replace(view.to_snapshot(), symbol=unified[view.symbol]) for view in engine.positions("a")
    ]
    assert port.positions() == expected
    assert len(expected) == 3
