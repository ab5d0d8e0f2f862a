"""``backtest`` benchmark: candles per second through the full decision path.

Workload: 10 symbols (the nine default instruments and a copy of ETH) x 1 year of 5m candles
from the emulator's generator (seed 7), 1,051,200 candles, replayed by :class:`Backtest`: the
engine walks every candle, every candle reaches its analyzer (``ema_cross`` with its default
parameters on 5m), and signals go through the allocator, risk and execution with their
position state machines and store; protection checks every bar. Settings are the defaults
otherwise, with 100,000 USD to start. ``--quick``: the same 10 symbols over 7 days.

``candles_per_s`` is candles replayed over the replay's wall time; generating the candles is
timed apart (``generate_s``). Also reported: the trades made (a throughput figure means little
without them), the kill switch's latches (each released the next UTC day, as the CLI's
replay does), the process's peak RSS and ``host_loop_s``, the host's speed just before the
replay (:func:`~ops.bench.harness.python_loop_s`; a shared host that is twice as slow doubles
it and halves the throughput). The replay is the CLI's: the analyzers run ahead in a
second process (:mod:`actors.backtest_stage`), so the figure is for a machine with two cores.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from decimal import Decimal

from actors.backtest import Backtest, BacktestSpec, closed_trades
from adapters.logs import configure_logging
from adapters.settings import Settings
from adapters.sim.datasets import generate_history
from adapters.sim.instruments import SimInstrument, default_instruments
from ops.bench.harness import BenchResult, python_loop_s

START = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DAY_MS = 86_400_000
SEED = 7
TIMEFRAME = "5m"


def instruments() -> dict[str, SimInstrument]:
    """The nine default instruments and a tenth, a copy of ETH under its own name."""
    specs = default_instruments()
    eth = specs["PF_ETHUSD"]
    copy = dataclasses.replace(
        eth,
        instrument=dataclasses.replace(
            eth.instrument, symbol="PF_B9USD", unified_symbol="B9/USD:USD"
        ),
    )
    return {**specs, copy.symbol: copy}


def settings_for(symbols: list[str]) -> Settings:
    return Settings(
        universe={
            "symbols": symbols,
            "bias_timeframes": ["1h"],
            "entry_timeframes": [TIMEFRAME],
        },
        strategy={"name": "ema_cross", "params": {}},
    )


def run(quick: bool) -> BenchResult:
    # a replay's kill-switch latches (the daily loss limit) are counted, not printed
    configure_logging(None, "CRITICAL")
    days = 7 if quick else 365
    end = START + days * DAY_MS
    specs = instruments()
    began = time.perf_counter()
    history = generate_history(specs, seed=SEED, start_ms=START, end_ms=end, timeframe=TIMEFRAME)
    generate_s = time.perf_counter() - began
    settings = settings_for([s.instrument.unified_symbol for s in specs.values()])
    spec = BacktestSpec(start_ms=START, end_ms=end, balance=Decimal(100_000), seed=SEED)
    host_loop_s = python_loop_s()
    with Backtest(settings, history, specs, spec) as backtest:
        replay = backtest.run()
        trades = closed_trades(replay.store_path)
    result = BenchResult(
        params={
            "quick": quick,
            "symbols": len(specs),
            "days": days,
            "timeframe": TIMEFRAME,
            "strategy": "ema_cross",
            "seed": SEED,
        }
    )
    result.add("candles_per_s", replay.candles / replay.elapsed_s, "per_s")
    result.add("candles", replay.candles, "count")
    result.add("elapsed_s", replay.elapsed_s, "s")
    result.add("generate_s", generate_s, "s")
    result.add("trades", len(trades), "count")
    result.add("kill_switch_latches", len(replay.latches), "count")
    result.add("host_loop_s", host_loop_s, "s")
    result.add("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB")
    return result
