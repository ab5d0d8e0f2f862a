"""``adapter`` benchmark: the exchange port through ccxt over loopback, and the feed client.

- ``place_cancel_p50_ms`` / ``place_cancel_p99_ms``: one limit order placed through
  :class:`CcxtExchange` (budget, signing, ccxt parsing, domain mapping) and cancelled again, against
  the loopback emulator, which writes its state durably before each answer.
- ``feed_msgs_per_s``: market-data messages parsed and applied per second by the feed client.
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

from adapters.exchange.budget import RequestBudget
from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.logs import configure_logging
from adapters.marketdata import measure_feed_throughput
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, start_server
from domain.models import Order, OrderRole, OrderStatus, OrderType, Side
from ops.bench.harness import BenchResult

SYMBOL = "ETH/USD:USD"
# The emulator does not meter requests; the venue's budget (20 units a pair, 50 a second) would
# turn this latency benchmark into a measurement of the budget itself.
UNMETERED = RequestBudget(capacity=1e9, window_s=1.0, reserve=0.0)


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def place_cancel_ms(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bastion-bench-adapter-") as state:
        handle = start_server(port=0, state_dir=Path(state), seed=3, speed=0, warmup_minutes=5)
        try:
            port = CcxtExchange(
                "krakenfutures",
                api_key=PAPER_API_KEY,
                api_secret=PAPER_API_SECRET,
                api_url=handle.url,
                budget=UNMETERED,
            )
            inst = port.instruments()[SYMBOL]
            price = inst.round_price(Decimal(1000))  # far below the market: rests
            samples = []
            for n in range(rounds):
                order = Order(
                    client_id=f"bst-b{n}-en-1",
                    symbol=SYMBOL,
                    role=OrderRole.ENTRY,
                    type=OrderType.LIMIT,
                    side=Side.BUY,
                    qty=inst.min_size * 10,
                    reduce_only=False,
                    status=OrderStatus.SENDING,
                    price=price,
                    position_id=f"b{n}",
                )
                started = time.perf_counter()
                placed = port.place_order(order)
                port.cancel_order(SYMBOL, exchange_id=placed.exchange_id)
                samples.append((time.perf_counter() - started) * 1000)
            return samples
        finally:
            handle.stop()


def run(quick: bool) -> BenchResult:
    configure_logging(None, "WARNING")  # logs to stderr only; stdout carries the JSON
    rounds, messages = (20, 20_000) if quick else (200, 200_000)
    samples = place_cancel_ms(rounds)
    result = BenchResult(
        params={
            "quick": quick,
            "rounds": rounds,
            "symbol": SYMBOL,
            "request_budget": "unmetered",
            "feed_messages": messages,
        }
    )
    result.add("place_cancel_p50_ms", _percentile(samples, 50), "ms")
    result.add("place_cancel_p99_ms", _percentile(samples, 99), "ms")
    result.add("feed_msgs_per_s", measure_feed_throughput(messages=messages), "per_s")
    return result
