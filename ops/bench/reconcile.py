"""``reconcile`` benchmark: one reconciliation pass over many positions and their orders.

The real execution core, reconciler and store (WAL, FULL) against the in-process matching engine
with synthetic perpetuals (clones of the BTC contract), so hundreds of symbols can hold a position
at once. Each position is a market long with its stop and two take-profits: 200 positions, 600
resting orders. Then a restart: a new execution core loads the registry and runs one pass, which
finds everything in order. ``reconcile_s`` is the pass's wall time; ``reconcile_requests`` counts
the port calls it made, each one venue request on Kraken Futures (open positions, open orders,
fills; the venue returns all open orders in one answer). The same pass over 50 positions shows
the count does not grow with the number of positions.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from actors.execution import ExecutionCore
from actors.messages import PlaceIntent
from adapters.logs import configure_logging
from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.instruments import SimInstrument, default_instruments
from domain.models import OrderIntent, OrderType, PositionSide
from ops.bench.harness import BenchResult
from persistence.store import PositionStore

START_MS = 1_735_689_600_000
PRICE = Decimal(50_000)
ACCOUNT = "bench"


class CountingPort:
    """The port with every call counted by method name."""

    def __init__(self, port: InProcessExchange) -> None:
        self._port = port
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def _venue(symbols: int) -> InProcessExchange:
    btc: SimInstrument = default_instruments()["PF_XBTUSD"]
    specs: dict[str, SimInstrument] = {}
    for n in range(symbols):
        venue_symbol = f"PF_B{n:03d}USD"
        inst = replace(
            btc.instrument,
            symbol=venue_symbol,
            base=f"B{n:03d}",
            unified_symbol=f"B{n:03d}/USD:USD",
        )
        specs[venue_symbol] = replace(btc, instrument=inst, start_price=PRICE)
    engine = SimEngine(specs, EngineConfig(participation=None), 5, START_MS)
    engine.create_account(ACCOUNT, 10**10)
    for venue_symbol in specs:
        engine.set_price(venue_symbol, PRICE)
    return InProcessExchange(engine, ACCOUNT)


def _intent(symbol: str) -> PlaceIntent:
    qty = Decimal("0.01")
    targets = ((PRICE * Decimal("1.05"), qty / 2), (PRICE * Decimal("1.10"), qty / 2))
    return PlaceIntent(
        OrderIntent(
            symbol=symbol,
            side=PositionSide.LONG,
            qty=qty,
            entry_type=OrderType.MARKET,
            entry_price=None,
            stop_price=PRICE * Decimal("0.95"),
            take_profits=targets,
            strategy="bench",
        )
    )


def measure(positions: int) -> tuple[float, int, int, Counter[str]]:
    """(seconds, port calls, open orders) of one pass over ``positions`` healthy positions."""
    with tempfile.TemporaryDirectory(prefix="bastion-bench-reconcile-") as tmp:
        port = _venue(positions)
        now = START_MS
        with PositionStore.open(Path(tmp) / "positions.db") as store:
            setup = ExecutionCore(port, store)
            for symbol in sorted(port.instruments()):
                setup.handle(_intent(symbol), now)
            orders = len(port.open_orders())
            for pos in setup.registry.values():
                pos.discard()
            counting = CountingPort(port)
            restarted = ExecutionCore(counting, store)  # type: ignore[arg-type]
            counting.calls.clear()  # the instruments read at construction is not the pass
            started = time.perf_counter()
            report = restarted.reconciler.run(now)
            elapsed = time.perf_counter() - started
            if report.status != "ready" or report.done:
                raise RuntimeError(f"a clean venue should reconcile with no action: {report}")
            return elapsed, sum(counting.calls.values()), orders, counting.calls


def run(quick: bool) -> BenchResult:
    configure_logging(None, "WARNING", console=False)
    big, small = (20, 5) if quick else (200, 50)
    seconds, requests, orders, calls = _best_of(3, lambda: measure(big))
    _, small_requests, _, _ = measure(small)
    result = BenchResult(
        params={
            "positions": big,
            "open_orders": orders,
            "adapter": "in-process engine, synthetic perpetuals",
            "calls": dict(sorted(calls.items())),
            "positions_small": small,
        }
    )
    result.add("reconcile_s", seconds, "s")
    result.add("reconcile_requests", requests, "count")
    result.add("reconcile_requests_small", small_requests, "count")
    return result


def _best_of(
    times: int, fn: Callable[[], tuple[float, int, int, Counter[str]]]
) -> tuple[float, int, int, Counter[str]]:
    runs = [fn() for _ in range(times)]
    return min(runs, key=lambda r: r[0])
