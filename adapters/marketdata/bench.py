"""``feed_msgs_per_s``: venue messages parsed and applied per second by the feed core.

In-process and deterministic: synthetic raw JSON messages (nine trades for each ticker, spread
over ``symbols`` products, 50 ms of venue time apart) go through :meth:`FeedCore.on_message`,
the same parser, candle builders, staleness and event path the live feed uses; only the socket
is left out. Candles close as the trade times cross minutes; events go to a no-op sink.
"""

from __future__ import annotations

import json
import random
import time

from adapters.marketdata.core import FeedCore
from adapters.marketdata.events import FeedEvent

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def synthetic_messages(count: int, symbols: int = 8, seed: int = 1) -> list[str]:
    """``count`` trade and ticker messages as the venue sends them."""
    rng = random.Random(seed)
    products = [f"PF_SYM{i}USD" for i in range(symbols)]
    prices = [100.0 + 10 * i for i in range(symbols)]
    out: list[str] = []
    for n in range(count):
        i = n % symbols
        ts = START_MS + 120_000 + n * 50
        prices[i] = round(prices[i] * (1 + rng.uniform(-0.001, 0.001)), 2)
        if n % 10 == 9:
            message = {
                "time": ts,
                "product_id": products[i],
                "feed": "ticker",
                "bid": prices[i] - 0.01,
                "ask": prices[i] + 0.01,
                "last": prices[i],
                "markPrice": prices[i],
            }
        else:
            message = {
                "feed": "trade",
                "product_id": products[i],
                "uid": f"t{n}",
                "side": "buy" if rng.random() < 0.5 else "sell",
                "type": "fill",
                "seq": n,
                "time": ts,
                "qty": round(rng.uniform(0.001, 2.0), 3),
                "price": prices[i],
            }
        out.append(json.dumps(message, separators=(",", ":")))
    return out


def live_core(symbols: int = 8, timeframes: tuple[str, ...] = ("1m", "5m", "1h")) -> FeedCore:
    """A core subscribed and live for ``symbols`` synthetic products (no history)."""
    mapping = {f"SYM{i}/USD:USD": f"PF_SYM{i}USD" for i in range(symbols)}

    def sink(event: FeedEvent) -> None:
        return None

    core = FeedCore(mapping, timeframes, sink, now_ms=lambda: time.time_ns() // 1_000_000)
    core.on_connected()
    core.on_message('{"event":"subscribed","feed":"trade"}')
    for product in mapping.values():
        ticker = {"feed": "ticker", "product_id": product, "time": START_MS, "markPrice": 1.0}
        core.on_message(json.dumps(ticker))
    core.on_message(json.dumps({"feed": "heartbeat", "time": START_MS + 120_000}))
    for request in core.repairs_due():
        core.apply_repair(request, {})
    return core


def measure_feed_throughput(messages: int = 200_000, symbols: int = 8) -> float:
    """Messages per second through parse + apply (``feed_msgs_per_s``)."""
    raw = synthetic_messages(messages, symbols)
    core = live_core(symbols)
    on_message = core.on_message
    started = time.perf_counter()
    for item in raw:
        on_message(item)
    elapsed = time.perf_counter() - started
    return messages / elapsed if elapsed > 0 else float("inf")
