"""``protection`` benchmark: fill seen -> stop acknowledged by the emulator.

The real execution core, store (WAL, FULL) and ccxt adapter against the loopback emulator:
each round opens a small market long (the fill is polled and applied, the stop is written ahead,
sent and acknowledged), then closes it. The latency is taken inside execution from the moment
the exposing fill is applied to the moment the venue acknowledges the stop: the fill's commit,
the stop's write-ahead commit (both WAL, synchronous=FULL) and one venue round trip. Measured
with the emulator's latency at 0 and with 20 ms injected on every request;
``sendorder_round_trip_p50_ms`` is the plain round trip of an order write for comparison (the
target is p99 < 1 round trip + 10 ms).
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from actors.execution import ExecutionCore
from actors.messages import CloseRequested, PlaceIntent
from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.logs import configure_logging
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, start_server
from domain.models import Order, OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide, Side
from ops.bench.adapter import UNMETERED, _percentile
from ops.bench.harness import BenchResult
from persistence.store import PositionStore


def _admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(
        urllib.request.Request(f"{url}/_sim/{path}", data=data), timeout=10
    ) as r:
        return json.loads(r.read())


def measure(entries: int, latency_ms: int) -> tuple[list[float], list[float]]:
    """Protection latencies (s) over ``entries`` rounds, and plain send round trips (s)."""
    with tempfile.TemporaryDirectory(prefix="bastion-bench-protection-") as tmp:
        handle = start_server(
            port=0, state_dir=Path(tmp) / "venue", seed=9, speed=0, warmup_minutes=5
        )
        try:
            if latency_ms:
                _admin(
                    handle.url,
                    "faults",
                    {"kind": "latency", "endpoint": "*", "ms": latency_ms, "times": -1},
                )
            port = CcxtExchange(
                "krakenfutures",
                api_key=PAPER_API_KEY,
                api_secret=PAPER_API_SECRET,
                api_url=handle.url,
                budget=UNMETERED,
            )
            venue_ids = port.venue_ids()
            prices = {
                s: Decimal(p["last"]) for s, p in _admin(handle.url, "state")["prices"].items()
            }
            latencies: list[float] = []
            with PositionStore.open(Path(tmp) / "positions.db") as store:
                execution = ExecutionCore(port, store, on_latency=latencies.append)
                symbols = sorted(port.instruments())
                for n in range(entries):
                    symbol = symbols[n % len(symbols)]
                    inst = port.instruments()[symbol]
                    price = prices[venue_ids[symbol]]
                    intent = OrderIntent(
                        symbol,
                        PositionSide.LONG,
                        inst.min_size * 10,
                        OrderType.MARKET,
                        None,
                        inst.stop_price(price * Decimal("0.8"), PositionSide.LONG),
                    )
                    now = int(time.time() * 1000)
                    execution.handle(PlaceIntent(intent), now)
                    execution.handle(CloseRequested(symbol, "bench"), now)
                trips = _round_trips(port, symbols[0], prices[venue_ids[symbols[0]]], 30)
            return latencies, trips
        finally:
            handle.stop()


def _round_trips(port: CcxtExchange, symbol: str, price: Decimal, count: int) -> list[float]:
    inst = port.instruments()[symbol]
    far = inst.round_price(price / 2)
    out = []
    for n in range(count):
        order = Order(
            f"bst-rt{n}-en-1",
            symbol,
            OrderRole.ENTRY,
            OrderType.LIMIT,
            Side.BUY,
            inst.min_size * 10,
            False,
            OrderStatus.SENDING,
            price=far,
            position_id=f"rt{n}",
        )
        started = time.perf_counter()
        placed = port.place_order(order)
        out.append(time.perf_counter() - started)
        port.cancel_order(symbol, exchange_id=placed.exchange_id)
    return out


def run(quick: bool) -> BenchResult:
    configure_logging(None, "WARNING")
    entries = 20 if quick else 200
    base, trips = measure(entries, 0)
    slow, _ = measure(entries, 20)
    result = BenchResult(
        params={"quick": quick, "entries": entries, "injected_latency_ms": [0, 20]}
    )
    ms = 1000.0
    result.add("protection_p50_ms", _percentile(base, 50) * ms, "ms")
    result.add("protection_p99_ms", _percentile(base, 99) * ms, "ms")
    result.add("protection_p99_ms_at_20ms", _percentile(slow, 99) * ms, "ms")
    result.add("sendorder_round_trip_p50_ms", _percentile(trips, 50) * ms, "ms")
    result.add("protected_entries", float(len(base)), "count")
    return result
