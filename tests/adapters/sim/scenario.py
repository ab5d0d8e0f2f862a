"""A seeded order flow over generated candles, shared by the determinism and snapshot tests."""

from __future__ import annotations

import json
import random
from decimal import Decimal

from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.instruments import default_instruments
from adapters.sim.marketdata import MarketGenerator

SYMBOLS = ("PF_XBTUSD", "PF_ETHUSD", "PF_SOLUSD")
START = 1_735_689_600_000


def new_engine(seed: int) -> SimEngine:
    specs = {s: default_instruments()[s] for s in SYMBOLS}
    engine = SimEngine(
        specs, EngineConfig(participation=Decimal("0.05")), seed=seed, start_ts=START
    )
    engine.create_account("a", 50_000)
    engine.create_account("b", 20_000)
    return engine


def candles(seed: int, minutes: int) -> list[list]:
    specs = [default_instruments()[s] for s in SYMBOLS]
    return list(
        MarketGenerator(specs, seed=seed, start_ms=START).next_batch(minutes).iter_minutes()
    )


def act(engine: SimEngine, rng: random.Random) -> None:
    """One random but seeded user action."""
    account = rng.choice(["a", "b"])
    symbol = rng.choice(SYMBOLS)
    inst = engine.instruments[symbol].instrument
    last = engine.last_price(symbol)
    qty = inst.lot_size * rng.randint(1, 50) * (100 if symbol != "PF_XBTUSD" else 10)
    side = rng.choice(["buy", "sell"])
    away = Decimal(1) + Decimal(rng.randint(1, 30)) / 1000 * (-1 if side == "buy" else 1)
    roll = rng.random()
    if roll < 0.3:
        engine.send_order(account, symbol, side, "mkt", qty, cli_ord_id=f"m{rng.random():.6f}")
    elif roll < 0.55:
        engine.send_order(
            account, symbol, side, "lmt", qty, limit_price=inst.round_price(last * away)
        )
    elif roll < 0.75:
        pos = engine.position(account, symbol)
        if pos is not None:
            exit_side = "sell" if pos.qty > 0 else "buy"
            kind = rng.choice(["stp", "take_profit"])
            below = (exit_side == "sell") == (kind == "stp")
            trigger = inst.round_price(last * Decimal("0.99" if below else "1.01"))
            signal = rng.choice(["last", "mark"])
            engine.send_order(
                account,
                symbol,
                exit_side,
                kind,
                pos.size,
                stop_price=trigger,
                reduce_only=True,
                trigger_signal=signal,
            )
    elif roll < 0.85:
        orders = engine.open_orders(account)
        if orders:
            engine.cancel_order(account, rng.choice(orders).order_id)
    else:
        orders = [o for o in engine.open_orders(account) if o.limit_price is not None]
        if orders:
            order = rng.choice(orders)
            grid = engine.instruments[order.symbol].instrument
            new_price = grid.round_price(order.limit_price * Decimal("0.999"))
            engine.edit_order(account, order.order_id, limit_price=new_price)


def run(engine: SimEngine, minutes: list[list], flow_seed: int) -> None:
    rng = random.Random(flow_seed)
    for group in minutes:
        for _ in range(rng.randint(0, 2)):
            act(engine, rng)
        engine.on_candles(group)


def fills_json(engine: SimEngine) -> str:
    return json.dumps([f.to_dict() for f in engine.fills()], sort_keys=True)
