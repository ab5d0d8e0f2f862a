"""``sim`` benchmark: the simulated exchange's matching engine and its loopback server.

- ``candles_per_s``: generated 1m candles (every default instrument) walked through the engine
  with resting limit and stop orders on every symbol, so matching does real work.
- ``orders_per_s``: in-process ``send_order`` calls (market orders opening and closing, and limit
  orders placed then cancelled), each answered synchronously.
- ``rest_orders_per_s``: limit orders placed through ccxt's own ``krakenfutures`` client over
  loopback HTTP (each followed by a cancel, not counted), signing and parsing included.
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

import ccxt

from adapters.sim.engine import SimEngine
from adapters.sim.instruments import default_instruments
from adapters.sim.marketdata import MarketGenerator
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, ccxt_urls, start_server
from domain.models import Candle
from ops.bench.harness import BenchResult

START = 1_735_689_600_000
SEED = 11


def _resting_orders(engine: SimEngine, account: str) -> int:
    """A limit buy below and a stop buy above the market on every symbol."""
    placed = 0
    for symbol, spec in engine.instruments.items():
        inst = spec.instrument
        last = engine.last_price(symbol)
        qty = inst.min_size * 10
        for kind, price in (("lmt", last * Decimal("0.97")), ("stp", last * Decimal("1.03"))):
            key = "limit_price" if kind == "lmt" else "stop_price"
            result = engine.send_order(
                account, symbol, "buy", kind, qty, **{key: inst.round_price(price)}
            )
            placed += result.order is not None
    return placed


def _minutes(engine: SimEngine, minutes: int) -> list[list[Candle]]:
    specs = list(engine.instruments.values())
    return list(
        MarketGenerator(specs, seed=SEED, start_ms=START).next_batch(minutes).iter_minutes()
    )


def _walk(engine: SimEngine, rows: list[list[Candle]]) -> tuple[int, float]:
    started = time.perf_counter()
    for row in rows:
        engine.on_candles(row)
    return sum(len(row) for row in rows), time.perf_counter() - started


def _orders(engine: SimEngine, account: str, rounds: int) -> tuple[int, float]:
    symbol = "PF_ETHUSD"
    inst = engine.instruments[symbol].instrument
    qty = inst.min_size * 10
    far = inst.round_price(engine.last_price(symbol) * Decimal("0.5"))
    sent = 0
    started = time.perf_counter()
    for n in range(rounds):
        engine.send_order(account, symbol, "buy" if n % 2 == 0 else "sell", "mkt", qty)
        limit = engine.send_order(account, symbol, "buy", "lmt", qty, limit_price=far)
        assert limit.order is not None
        engine.cancel_order(account, order_id=limit.order.order_id)
        sent += 2
    return sent, time.perf_counter() - started


def _rest_orders(count: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="bastion-bench-sim-") as state:
        handle = start_server(port=0, state_dir=Path(state), seed=SEED, speed=0, warmup_minutes=5)
        try:
            exchange = ccxt.krakenfutures(
                {"apiKey": PAPER_API_KEY, "secret": PAPER_API_SECRET, "enableRateLimit": False}
            )
            urls = ccxt_urls(handle.url)
            urls.pop("ws")
            exchange.urls["api"].update(urls)
            exchange.load_markets()
            last = exchange.fetch_ticker("ETH/USD:USD")["last"]
            price = round(last * 0.5, 1)
            started = time.perf_counter()
            for _ in range(count):
                order = exchange.create_order("ETH/USD:USD", "limit", "buy", 0.01, price)
                exchange.cancel_order(order["id"], "ETH/USD:USD")
            return count, time.perf_counter() - started
        finally:
            handle.stop()


def run(quick: bool) -> BenchResult:
    minutes, rounds, rest = (60, 200, 20) if quick else (1440, 5000, 300)
    engine = SimEngine(default_instruments(), seed=SEED, start_ts=START)
    engine.create_account("bench", 10_000_000)
    rows = _minutes(engine, minutes + 1)
    _walk(engine, rows[:1])  # prices for every symbol before orders rest
    resting = _resting_orders(engine, "bench")
    candles, candle_s = _walk(engine, rows[1:])
    orders, order_s = _orders(engine, "bench", rounds)
    rest_orders, rest_s = _rest_orders(rest)
    result = BenchResult(
        params={
            "quick": quick,
            "symbols": len(engine.instruments),
            "minutes": minutes,
            "resting_orders": resting,
            "engine_orders": orders,
            "rest_orders": rest_orders,
        }
    )
    result.add("candles_per_s", candles / candle_s, "per_s")
    result.add("orders_per_s", orders / order_s, "per_s")
    result.add("rest_orders_per_s", rest_orders / rest_s, "per_s")
    return result
