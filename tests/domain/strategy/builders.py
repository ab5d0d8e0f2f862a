"""Seeded bar series for strategy tests: random walks and their higher-timeframe aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from domain.models import Instrument
from domain.strategy.base import TIMEFRAME_MS, Bars

START_MS = 1_735_689_600_000  # 2025-01-01T00:00Z, a multiple of every timeframe

INSTRUMENT = Instrument(
    symbol="PF_XBTUSD",
    base="BTC",
    quote="USD",
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"),
    min_size=Decimal("0.001"),
)


def bars(
    timeframe: str,
    highs: Sequence[float],
    lows: Sequence[float],
    opens: Sequence[float] | None = None,
    closes: Sequence[float] | None = None,
    start_ms: int = START_MS,
) -> Bars:
    """Hand-built bars; opens/closes default to the bar midpoints."""
    h = np.asarray(highs, dtype=float)
    lo = np.asarray(lows, dtype=float)
    mid = (h + lo) / 2
    o = mid if opens is None else np.asarray(opens, dtype=float)
    c = mid if closes is None else np.asarray(closes, dtype=float)
    step = TIMEFRAME_MS[timeframe]
    times = start_ms + step * np.arange(len(h), dtype=np.int64)
    return Bars(timeframe, times, o, h, lo, c, np.ones(len(h)))


def random_walk(timeframe: str, n: int, seed: int, start: float = 30_000.0) -> Bars:
    """A seeded random walk with trending regimes and volatility clusters."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.normal(0, 0.0006, n // 200 + 1), 200)[:n]
    vol = 0.002 * np.exp(np.repeat(rng.normal(0, 0.4, n // 50 + 1), 50)[:n])
    returns = drift + vol * rng.standard_normal(n)
    close = start * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([start], close[:-1]))
    body_hi = np.maximum(open_, close)
    body_lo = np.minimum(open_, close)
    high = body_hi * (1 + np.abs(rng.normal(0, 0.7, n)) * vol)
    low = body_lo * (1 - np.abs(rng.normal(0, 0.7, n)) * vol)
    step = TIMEFRAME_MS[timeframe]
    times = START_MS + step * np.arange(n, dtype=np.int64)
    return Bars(timeframe, times, open_, high, low, close, rng.uniform(1, 10, n))


def aggregate(source: Bars, timeframe: str) -> Bars:
    """Complete higher-timeframe bars built from ``source`` (a trailing partial bar is dropped)."""
    factor = TIMEFRAME_MS[timeframe] // source.tf_ms
    count = len(source) // factor
    cut = count * factor

    def shaped(a: np.ndarray) -> np.ndarray:
        return a[:cut].reshape(count, factor)

    return Bars(
        timeframe,
        source.open_time[:cut:factor],
        shaped(source.open)[:, 0],
        shaped(source.high).max(axis=1),
        shaped(source.low).min(axis=1),
        shaped(source.close)[:, -1],
        shaped(source.volume).sum(axis=1),
    )
