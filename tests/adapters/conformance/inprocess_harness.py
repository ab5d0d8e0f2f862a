"""The conformance harness of :class:`adapters.sim.inprocess.InProcessExchange`.

A fresh engine with the default instruments, one account with 1,000,000 USD and 180 minutes of
generated candles behind it (so prices, positions' marks and OHLCV history exist). Choices:

- ``participation=None``: a resting limit crossed by a candle fills completely; the suite tests
  the port, not the liquidity model.
- ``advance_minutes`` feeds the generator's next minutes, each symbol's prices scaled so that
  the series continues from the last price ``set_price`` gave (no jump back to the generator's
  own level), then moves the clock to the next minute so later ticks open a new bar.
- The retry policy records its waits instead of sleeping and draws jitter from a seeded RNG.
"""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from adapters.retry import RetryPolicy
from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.inprocess_faults import FaultPlan
from adapters.sim.instruments import default_instruments
from adapters.sim.marketdata import MINUTE_MS, MarketGenerator
from domain.models import Candle
from tests.adapters.conformance.harness import Fault, VenueHarness

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SEED = 7
ACCOUNT = "conformance"
BALANCE = 1_000_000
WARMUP_MINUTES = 180


class InProcessHarness:
    """:class:`VenueHarness` over an in-process engine (module docstring)."""

    def __init__(self, seed: int = SEED) -> None:
        specs = default_instruments()
        self.engine = SimEngine(specs, EngineConfig(participation=None), seed, START_MS)
        self.engine.create_account(ACCOUNT, BALANCE)
        self.faults = FaultPlan()
        self._sleeps: list[float] = []
        self.port = InProcessExchange(
            self.engine,
            ACCOUNT,
            retry=RetryPolicy(sleep=self._sleeps.append, rng=random.Random(seed)),
            faults=self.faults,
        )
        self._generator = MarketGenerator(specs, seed=seed, start_ms=START_MS)
        self._generated = {s: spec.start_price for s, spec in specs.items()}
        self._scale = {s: Decimal(1) for s in specs}
        self._venue = {spec.instrument.unified_symbol: s for s, spec in specs.items()}
        self.advance_minutes(WARMUP_MINUTES)

    def venue_symbol(self, symbol: str) -> str:
        return self._venue[symbol]

    def set_price(self, symbol: str, price: Decimal) -> None:
        venue = self.venue_symbol(symbol)
        with self.port.lock:
            self.engine.set_price(venue, price)
            self._scale[venue] = self.engine.last_price(venue) / self._generated[venue]

    def now_ms(self) -> int:
        with self.port.lock:
            return self.engine.now

    def advance_minutes(self, minutes: int) -> None:
        for group in self._generator.next_batch(minutes).iter_minutes():
            with self.port.lock:
                self.engine.on_candles([self._scaled(c) for c in group])
                self.engine.advance_time(group[0].open_time + MINUTE_MS)
            for candle in group:
                self._generated[candle.symbol] = Decimal(repr(candle.close))

    def inject(self, fault: Fault, *, times: int = 1) -> None:
        self.faults.add(fault, times)

    def clear_faults(self) -> None:
        self.faults.clear()

    def pending_faults(self) -> int:
        return self.faults.pending()

    def slept(self) -> list[float]:
        return list(self._sleeps)

    def close(self) -> None:
        self.faults.clear()

    def _scaled(self, candle: Candle) -> Candle:
        factor = float(self._scale[candle.symbol])
        if factor == 1.0:
            return candle
        return replace(
            candle,
            open=candle.open * factor,
            high=candle.high * factor,
            low=candle.low * factor,
            close=candle.close * factor,
        )


def make_inprocess_harness(tmp_path: Path) -> VenueHarness:
    """The in-process venue keeps nothing on disk, so ``tmp_path`` is unused."""
    return InProcessHarness()
