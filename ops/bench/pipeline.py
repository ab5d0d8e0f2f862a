"""``pipeline`` benchmark: candle close -> entry order acknowledged, many symbols on one bar.

The real cores (one analyzer per symbol, the auction allocator, risk, execution with a durable
WAL store) dispatched in message order, with the in-process venue (so venue round trips are
zero here; add them for a real venue). Every symbol's bar closes at the same moment; a strategy
that always signals makes every symbol a contender, and the limits are opened up so that all of
them are entered: the worst case, where every entry queues behind the others in the one
execution actor. Latency per symbol: from the moment the bar's candles start arriving to the
moment that symbol's entry order is acknowledged. The auction's collect window (a configured
wait, 2 s by default) is set to 0 and not part of the figure. Also reports the process's peak
RSS with that many symbols' analyzers holding their buffers.
"""

from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from actors.allocator import AllocatorCore
from actors.analyzer import AnalyzerCore
from actors.core import EXECUTION, Core, analyzer
from actors.execution import ExecutionCore
from actors.messages import AccountEquity, CandleClosed, CloseRequested, PlaceIntent
from actors.risk import RiskCore
from adapters.logs import configure_logging
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.instruments import SimInstrument, default_instruments
from domain.allocation import AllocatorParams
from domain.models import Candle, Instrument, PositionSide, Signal
from domain.risk import RiskParams
from ops.bench.adapter import _percentile
from ops.bench.harness import BenchResult
from persistence.store import PositionStore

START = 1_735_689_600_000
MINUTE = 60_000


class AlwaysLong:
    """A strategy that proposes a long on every bar: the pipeline, not the strategy, is timed."""

    name = "always_long"
    timeframes = ("1m", "5m")

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        bars = data["1m"]
        close = Decimal(str(bars.close[-1]))
        at = int(bars.open_time[-1]) + MINUTE
        return Signal(
            symbol=instrument.symbol,
            side=PositionSide.LONG,
            entry_price=instrument.round_price(close),
            stop_price=instrument.stop_price(close * Decimal("0.98"), PositionSide.LONG),
            targets=(instrument.round_price(close * Decimal("1.04")),),
            score=0.6,
            reasons=("bench",),
            created_at=at,
            expires_at=at + 2 * MINUTE,
            strategy=self.name,
            timeframe="1m",
        )


def _instruments(count: int) -> dict[str, SimInstrument]:
    base = default_instruments()["PF_ETHUSD"]
    out = {}
    for n in range(count):
        inst = dataclasses.replace(
            base.instrument, symbol=f"PF_B{n}USD", unified_symbol=f"B{n}/USD:USD"
        )
        out[inst.symbol] = dataclasses.replace(base, instrument=inst)
    return out


def _candle(symbol: str, timeframe: str, open_time: int, price: float) -> Candle:
    return Candle(symbol, timeframe, open_time, price, price * 1.001, price * 0.999, price, 100.0)


def dispatch(cores: Mapping[str, Core], first: list[tuple[str, object]], now: int) -> list[float]:
    """Deliver messages in order, as the directory would; the times (s since the start) at
    which execution finished handling each ``PlaceIntent``, i.e. had the entry acknowledged."""
    started = time.perf_counter()
    acked = []
    queue: deque[tuple[str, object]] = deque(first)
    while queue:
        dest, message = queue.popleft()
        if dest not in cores:
            continue  # e.g. protection: not part of this measurement
        queue.extend(cores[dest].handle(message, now))
        if dest == EXECUTION and isinstance(message, PlaceIntent):
            acked.append(time.perf_counter() - started)
    return acked


def _build(symbols_count: int, store: PositionStore) -> tuple[dict[str, Core], list[str]]:
    engine = SimEngine(_instruments(symbols_count), seed=3, start_ts=START)
    engine.create_account("bench", 100_000_000)
    port = InProcessExchange(engine, "bench")
    instruments = dict(port.instruments())
    n = symbols_count
    alloc = AllocatorParams(
        auction_max_margin_util=0.8,
        max_positions=n,
        max_opens_per_cycle=n,
        max_per_cluster=n,
        max_net_long=n,
        collect_window_ms=0,
    )
    risk = RiskParams(
        risk_per_trade=0.0005,
        max_margin_util=0.9,
        max_position_margin_frac=0.008,
        max_positions=n,
        max_leverage=5.0,
    )
    cores: dict[str, Core] = {
        "allocator": AllocatorCore(alloc, instruments, risk),
        "risk": RiskCore(risk, instruments),
        EXECUTION: ExecutionCore(port, store),
    }
    for symbol in sorted(instruments):
        cores[analyzer(symbol)] = AnalyzerCore(
            symbol, instruments[symbol], AlwaysLong(), ("5m",), ("1m",)
        )
    return cores, sorted(instruments)


def _warm(cores: Mapping[str, Core], symbols: list[str], now: int) -> None:
    """Equity and 200 minutes of history, as the feed's warm-up would deliver them."""
    for name in ("allocator", "risk"):
        cores[name].handle(AccountEquity(Decimal(100_000_000), now), now)
    for symbol in symbols:
        for k in range(200, 0, -1):
            t = now - k * MINUTE
            history = [CandleClosed(symbol, "1m", _candle(symbol, "1m", t, 3000.0), "rest")]
            if t % (5 * MINUTE) == 0:
                bar5 = _candle(symbol, "5m", t - 4 * MINUTE, 3000.0)
                history.append(CandleClosed(symbol, "5m", bar5, "rest"))
            for message in history:
                cores[analyzer(symbol)].handle(message, t)


def run(quick: bool) -> BenchResult:
    configure_logging(None, "WARNING")
    symbols_count, bars = (20, 2) if quick else (100, 5)
    latencies: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bastion-bench-pipeline-") as tmp,
        PositionStore.open(Path(tmp) / "positions.db") as store,
    ):
        cores, symbols = _build(symbols_count, store)
        now = START + 200 * MINUTE
        _warm(cores, symbols, now)
        for bar in range(bars):
            open_time = now + bar * MINUTE
            close_time = open_time + MINUTE
            closes = [
                (analyzer(s), CandleClosed(s, "1m", _candle(s, "1m", open_time, 3000.0)))
                for s in symbols
            ]
            latencies += dispatch(cores, closes, close_time)
            exits = [(EXECUTION, CloseRequested(s, "bench")) for s in symbols]
            dispatch(cores, exits, close_time)  # free the symbols for the next bar; not timed
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = BenchResult(
        params={
            "quick": quick,
            "symbols": symbols_count,
            "bars": bars,
            "collect_window_ms": 0,
            "venue": "in-process (no round trips)",
        }
    )
    result.add("pipeline_p50_ms", _percentile(latencies, 50) * 1000, "ms")
    result.add("pipeline_p99_ms", _percentile(latencies, 99) * 1000, "ms")
    result.add("entries", float(len(latencies)), "count")
    result.add("pipeline_peak_rss_mb", peak_mb, "MB")
    return result
