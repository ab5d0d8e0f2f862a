"""Symbols where nothing can happen skip the candle walk, and the result is the same.

Each comparison runs the same orders and candles through two engines: one as built, one forced
to walk every symbol that holds an order or a position (what the engine did before it learnt to
skip). Their whole state must be equal: prices, orders, fills, positions, balances, events.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from adapters.sim.engine import SimEngine
from domain.models import Candle
from tests.adapters.sim.conftest import BTC, ETH, T0, make_engine

MINUTE = 60_000


def _minute(k: int, btc: tuple[float, ...], eth: tuple[float, ...]) -> list[Candle]:
    return [
        Candle(BTC, "1m", T0 + k * MINUTE, *btc, 10.0),
        Candle(ETH, "1m", T0 + k * MINUTE, *eth, 10.0),
    ]


def _walking_everything(engine: SimEngine) -> SimEngine:
    """Make ``engine`` walk every symbol holding an order or a position, on every candle."""
    engine._may_act = lambda symbol, low, high: True  # type: ignore[method-assign]
    return engine


def _state(engine: SimEngine) -> dict[str, Any]:
    state = engine.to_state()
    state["events"] = [(e["kind"], e["ts"], e["symbol"], e["data"]) for e in state["events"]]
    return state


def test_an_idle_symbol_ends_at_the_close_with_its_bar_recorded() -> None:
    engine = make_engine()
    engine.on_candles(_minute(1, (50000, 50500, 49000, 49800), (3000, 3010, 2990, 3005)))
    assert engine.last_price(BTC) == engine.mark_price(BTC) == Decimal(49800)
    assert engine.last_price(ETH) == Decimal("3005.0")
    bar = engine.ohlcv(BTC)[-1]
    assert (bar.open, bar.high, bar.low, bar.close) == (50000, 50500, 49000, 49800)
    assert engine.now == T0 + MINUTE + 59_999  # where a walk leaves the clock


def test_orders_out_of_reach_are_not_walked_and_orders_in_reach_fill_on_the_path() -> None:
    def run(engine: SimEngine) -> list[tuple[str, Decimal, int]]:
        engine.send_order("acc", ETH, "buy", "mkt", "1")
        engine.send_order("acc", ETH, "sell", "stp", "1", stop_price=2950, reduce_only=True)
        engine.send_order("acc", BTC, "buy", "mkt", "0.1")
        engine.send_order("acc", BTC, "sell", "stp", "0.1", stop_price=40000, reduce_only=True)
        walks: list[str] = []
        walk = engine._walk
        engine._walk = lambda start, todo: (  # type: ignore[method-assign]
            walks.extend(c.symbol for c, _ in todo),
            walk(start, todo),
        )[1]
        fills = engine.on_candles(
            _minute(1, (50000, 50500, 49000, 49800), (3000, 3010, 2940, 3005))
        )
        assert [(f.symbol, f.price, f.ts) for f in fills] == [(ETH, Decimal("2950.0"), T0 + 80_000)]
        return [(s, Decimal(0), 0) for s in walks]

    skipping, full = make_engine(), _walking_everything(make_engine())
    assert run(skipping) == [(ETH, Decimal(0), 0)]  # BTC's stop at 40000 is out of reach
    assert run(full) == [(BTC, Decimal(0), 0), (ETH, Decimal(0), 0)]
    assert _state(skipping) == _state(full)


def test_a_possible_liquidation_walks_every_symbol_holding_something() -> None:
    """At 50x the account's margin can run out within a candle: nothing is skipped then."""

    def run(engine: SimEngine) -> SimEngine:
        engine.set_leverage("acc", BTC, 50)
        engine.send_order("acc", BTC, "buy", "mkt", "90")  # 4.5M notional on 100k
        engine.send_order("acc", ETH, "buy", "mkt", "1")
        for k in range(1, 4):
            engine.on_candles(_minute(k, (50000, 50100, 48000, 48500), (3000, 3001, 2999, 3000)))
        return engine

    skipping = make_engine()
    verdicts: list[bool] = []
    ruled_out = skipping._liquidation_ruled_out
    skipping._liquidation_ruled_out = lambda active: (  # type: ignore[method-assign]
        verdicts.append(ruled_out(active)) or verdicts[-1]
    )
    skipping, full = run(skipping), run(_walking_everything(make_engine()))
    assert False in verdicts  # the bound refused to rule the liquidation out
    assert any(e.kind == "liquidation" for e in skipping.events_since(0))
    assert _state(skipping) == _state(full)


def _random_session(engine: SimEngine, seed: int) -> SimEngine:
    """Entries, stops, take-profits and resting limits around a random walk of two symbols,
    some with leverage high enough to be liquidated."""
    rng = random.Random(seed)
    for symbol in (BTC, ETH):
        engine.set_leverage("acc", symbol, rng.choice([1, 10, 50]))
    price = {BTC: 50000.0, ETH: 3000.0}
    tick = {BTC: 1.0, ETH: 0.1}
    size = {BTC: ("0.5", "5", "40"), ETH: ("2", "20", "300")}
    for k in range(1, 120):
        for symbol in (BTC, ETH):
            if rng.random() < 0.15:
                side = rng.choice(["buy", "sell"])
                away = rng.uniform(0.001, 0.03) * price[symbol]
                level = round(price[symbol] / tick[symbol]) * tick[symbol]
                if rng.random() < 0.2:  # a naked entry: only a liquidation may end it
                    engine.send_order("acc", symbol, side, "mkt", size[symbol][2])
                elif rng.random() < 0.5:
                    engine.send_order("acc", symbol, side, "mkt", rng.choice(size[symbol]))
                    exit_side = "sell" if side == "buy" else "buy"
                    sign = 1 if side == "buy" else -1
                    for kind, trigger in (
                        ("stp", level - sign * away),
                        ("take_profit", level + sign * away),
                    ):
                        on_grid = round(trigger / tick[symbol]) * tick[symbol]
                        engine.send_order(
                            "acc", symbol, exit_side, kind, size[symbol][2],
                            stop_price=on_grid, reduce_only=True,
                        )  # fmt: skip
                else:
                    limit = level - away if side == "buy" else level + away
                    engine.send_order(
                        "acc",
                        symbol,
                        side,
                        "lmt",
                        size[symbol][0],
                        limit_price=round(limit / tick[symbol]) * tick[symbol],
                    )
        candles = []
        for symbol in (BTC, ETH):
            o = price[symbol]
            c = o * (1 + rng.gauss(0, 0.006))
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.003)))
            low = min(o, c) * (1 - abs(rng.gauss(0, 0.003)))
            price[symbol] = c
            candles.append(Candle(symbol, "1m", T0 + k * MINUTE, o, h, low, c, 5.0))
        engine.on_candles(candles)
    return engine


def test_random_sessions_end_in_the_same_state_as_full_walks() -> None:
    liquidated = 0
    for seed in range(12):
        skipping = _random_session(make_engine(participation=Decimal("0.5")), seed)
        full = _random_session(_walking_everything(make_engine(participation=Decimal("0.5"))), seed)
        assert _state(skipping) == _state(full), seed
        assert skipping.fills(), seed  # the session traded, so the comparison means something
        liquidated += any(e.kind == "liquidation" for e in skipping.events_since(0))
    assert liquidated, "some sessions reach a liquidation"


def test_a_band_ruled_liquidation_free_answers_until_an_order_position_or_price_changes() -> None:
    engine = make_engine()
    engine.send_order("acc", BTC, "buy", "mkt", "0.5")
    engine.send_order("acc", BTC, "sell", "stp", "0.5", stop_price=40000, reduce_only=True)
    computed: list[object] = []
    holds = engine._surplus_holds
    engine._surplus_holds = lambda ranges: (  # type: ignore[method-assign]
        computed.append(ranges),
        holds(ranges),
    )[1]
    quiet = (50000, 50100, 49900, 50000)
    eth = (3000, 3001, 2999, 3000)
    engine.on_candles(_minute(1, quiet, eth))  # the candle's bound, then a band around the marks
    assert len(computed) == 2
    engine.on_candles(_minute(2, quiet, eth))
    assert len(computed) == 2  # inside the band, nothing changed: answered by it
    engine.on_candles(_minute(3, (50000, 60000, 49900, 50000), eth))  # leaves the band
    assert len(computed) == 4
    engine.send_order("acc", ETH, "buy", "lmt", "1", limit_price=2000)  # an order changed
    engine.on_candles(_minute(4, quiet, eth))
    assert len(computed) == 6
    engine.set_price(BTC, 50000, ts=T0 + 5 * MINUTE)  # a mark moved outside a candle
    engine.on_candles(_minute(6, quiet, eth))
    assert len(computed) == 8
