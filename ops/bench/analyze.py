"""``analyze`` benchmark: the decision core's hot paths.

- ``analyze_median_ms`` / ``analyze_p99_ms``: one ``smc`` analysis of one symbol with 1,000 closed
  bars on each of three timeframes (15m and 1h entries, 4h bias), on a seeded random walk. Each
  run sees a window ending one 15m bar later than the previous one, as a live analyzer would.
- ``allocate_200_ms``: median of one auction with 200 contenders (195 signals and 5 positions,
  both sides, with ``max_positions`` 6 so swaps and every cap are exercised).
"""

from __future__ import annotations

import statistics
import sys
import time
from decimal import Decimal

import numpy as np

from domain.allocation import AllocatorParams, PositionBid, SignalBid, allocate
from domain.models import Instrument, PositionSide, Signal
from domain.strategy.base import TIMEFRAME_MS, Bars
from domain.strategy.smc import SmcStrategy
from ops.bench.harness import BenchResult

SEED = 5
START_MS = 1_735_689_600_000
BARS = 1000
ENTRY = ("15m", "1h")
BIAS = ("4h",)
INSTRUMENT = Instrument(
    "PF_XBTUSD", "BTC", "USD", Decimal("0.5"), Decimal("0.0001"), Decimal("0.0001")
)


def _walk(n: int, rng: np.random.Generator) -> Bars:
    vol = 0.002 * np.exp(np.repeat(rng.normal(0, 0.4, n // 50 + 1), 50)[:n])
    drift = np.repeat(rng.normal(0, 0.0004, n // 200 + 1), 200)[:n]
    close = 60_000 * np.exp(np.cumsum(drift + vol * rng.standard_normal(n)))
    open_ = np.concatenate(([60_000.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.7, n)) * vol)
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.7, n)) * vol)
    times = START_MS + TIMEFRAME_MS["15m"] * np.arange(n, dtype=np.int64)
    return Bars("15m", times, open_, high, low, close, rng.uniform(1, 10, n))


def _aggregate(src: Bars, tf: str) -> Bars:
    f = TIMEFRAME_MS[tf] // src.tf_ms
    m = len(src) // f
    cut = m * f
    return Bars(
        tf,
        src.open_time[:cut:f],
        src.open[:cut].reshape(m, f)[:, 0],
        src.high[:cut].reshape(m, f).max(axis=1),
        src.low[:cut].reshape(m, f).min(axis=1),
        src.close[:cut].reshape(m, f)[:, -1],
        src.volume[:cut].reshape(m, f).sum(axis=1),
    )


def _windows(runs: int) -> list[dict[str, Bars]]:
    """``runs`` data sets of the last 1,000 bars per timeframe, each one 15m bar later."""
    per_4h = TIMEFRAME_MS["4h"] // TIMEFRAME_MS["15m"]
    base = _walk(BARS * per_4h + runs + per_4h, np.random.default_rng(SEED))
    full = {"15m": base, "1h": _aggregate(base, "1h"), "4h": _aggregate(base, "4h")}
    first_end = int(base.close_time[BARS * per_4h + per_4h - 1])
    windows = []
    for i in range(runs):
        at = first_end + i * TIMEFRAME_MS["15m"]
        window = {}
        for tf, bars in full.items():
            closed = int(np.searchsorted(bars.close_time, at, side="right"))
            start = closed - BARS
            window[tf] = Bars(
                tf,
                bars.open_time[start:closed],
                bars.open[start:closed],
                bars.high[start:closed],
                bars.low[start:closed],
                bars.close[start:closed],
                bars.volume[start:closed],
            )
        windows.append(window)
    return windows


def _contenders(rng: np.random.Generator) -> tuple[list[SignalBid], list[PositionBid]]:
    signals = []
    for i in range(195):
        side = PositionSide.LONG if i % 2 else PositionSide.SHORT
        signal = Signal(
            f"SYM{i:03d}",
            side,
            Decimal(100),
            Decimal(99 if i % 2 else 101),
            (Decimal(103 if i % 2 else 97),),
            float(rng.uniform(0.3, 1.0)),
            ("bench",),
            START_MS,
            START_MS + 3_600_000,
            "smc",
            "15m",
        )
        signals.append(
            SignalBid(
                signal,
                Decimal(int(rng.integers(200, 2000))),
                float(rng.uniform(0, 0.05)),
                f"c{i % 7}",
            )
        )
    positions = [
        PositionBid(
            f"p{i}",
            f"HELD{i}",
            PositionSide.LONG if i % 2 else PositionSide.SHORT,
            float(rng.uniform(0.3, 0.9)),
            float(rng.uniform(-1, 2)),
            Decimal(1500),
            START_MS - 7_200_000,
            cluster=f"c{i}",
        )
        for i in range(5)
    ]
    return signals, positions


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(quick: bool) -> BenchResult:
    runs = 30 if quick else 1000
    strategy = SmcStrategy({}, BIAS, ENTRY)
    windows = _windows(runs)
    strategy.analyze(windows[0], INSTRUMENT)  # warm caches and imports
    timings, signals = [], 0
    for window in windows:
        started = time.perf_counter()
        signal = strategy.analyze(window, INSTRUMENT)
        timings.append(time.perf_counter() - started)
        signals += signal is not None
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000
    print(f"analyze: {runs} runs, {signals} signals", file=sys.stderr)

    bids, positions = _contenders(np.random.default_rng(SEED))
    params = AllocatorParams(max_positions=6, max_closes_per_cycle=2)
    alloc_runs = 20 if quick else 300
    alloc_timings = []
    for _ in range(alloc_runs):
        started = time.perf_counter()
        allocate(bids, positions, Decimal(100_000), START_MS, params)
        alloc_timings.append(time.perf_counter() - started)

    result = BenchResult(
        params={
            "quick": quick,
            "strategy": "smc",
            "bars_per_timeframe": BARS,
            "entry_timeframes": list(ENTRY),
            "bias_timeframes": list(BIAS),
            "analyze_runs": runs,
            "signals": signals,
            "contenders": len(bids) + len(positions),
            "allocate_runs": alloc_runs,
        }
    )
    result.add("analyze_median_ms", _median_ms(timings), "ms")
    result.add("analyze_p99_ms", p99, "ms")
    result.add("allocate_200_ms", _median_ms(alloc_timings), "ms")
    return result
