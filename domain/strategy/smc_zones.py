"""Price zones: average true range, fair value gaps, order blocks, Fibonacci and premium/discount.

Decisions:

- ATR is the simple mean of the true range over ``period`` bars (an expanding mean for the
  first bars), computed from a running sum so that a prefix of the series gives the same values.
- A bullish fair value gap is a three-candle imbalance: the third candle's low is above the first
  candle's high; the gap is ``[high[i-2], low[i]]`` and is known at bar ``i``. Bearish mirrors it.
  A gap is *touched* when a later bar trades into it and *filled* when a later bar trades through
  its far edge.
- A bullish order block is the last bearish candle (close < open) at or before the origin of the
  impulse leg that broke structure upward, searched at most ``lookback`` bars back; its zone is
  that candle's low..high. It is *mitigated* by the first bar after the break that trades into it.
- Retracement ratios are measured from the leg's end back toward its origin: for an up-leg
  ``lo..hi`` the 0.618 level is ``hi - 0.618 * (hi - lo)``. The optimal trade entry (OTE) zone lies
  between two such ratios; below the leg's midpoint is discount, above it premium.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from domain.strategy.base import FloatArray, IntArray


def average_true_range(
    high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> FloatArray:
    """Causal simple-mean ATR (see module docstring)."""
    n = len(close)
    if n == 0:
        return np.zeros(0)
    prev_close = np.concatenate((close[:1], close[:-1]))
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))
    total = np.cumsum(tr)
    out = np.empty(n)
    head = min(period, n)
    out[:head] = total[:head] / np.arange(1, head + 1)
    if n > period:
        out[period:] = (total[period:] - total[:-period]) / period
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Gaps:
    """Fair value gaps of one direction: ``bottom < top``, known at bar ``index``."""

    index: IntArray
    bottom: FloatArray
    top: FloatArray

    def __len__(self) -> int:
        return len(self.index)


def fair_value_gaps(
    high: FloatArray, low: FloatArray, atr: FloatArray, min_atr: float
) -> tuple[Gaps, Gaps]:
    """Bullish and bearish gaps at least ``min_atr`` ATRs tall."""
    if len(high) < 3:
        empty = Gaps(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        return empty, empty
    third = np.arange(2, len(high), dtype=np.int64)
    min_size = min_atr * atr[2:]
    bull_size = low[2:] - high[:-2]
    bear_size = low[:-2] - high[2:]
    bull = (bull_size > 0) & (bull_size >= min_size)
    bear = (bear_size > 0) & (bear_size >= min_size)
    bi, si = third[bull], third[bear]
    return (
        Gaps(bi, high[bi - 2], low[bi]),
        Gaps(si, high[si], low[si - 2]),
    )


def gap_touched(low: FloatArray, gap_top: float, index: int, t: int) -> bool:
    """True when a bar in ``(index, t]`` traded down into a bullish gap (top at ``gap_top``)."""
    return bool(t > index and low[index + 1 : t + 1].min() <= gap_top)


def gap_filled(low: FloatArray, gap_bottom: float, index: int, t: int) -> bool:
    """True when a bar in ``(index, t]`` traded down through a bullish gap's bottom."""
    return bool(t > index and low[index + 1 : t + 1].min() <= gap_bottom)


def bullish_order_block(open_: FloatArray, close: FloatArray, origin: int, lookback: int) -> int:
    """Bar of the last bearish candle in ``[origin - lookback, origin]``, or -1 if none."""
    start = max(origin - lookback, 0)
    bearish = close[start : origin + 1] < open_[start : origin + 1]
    hits = np.flatnonzero(bearish)
    return int(start + hits[-1]) if len(hits) else -1


def impulse_origin(low: FloatArray, swing_bar: int, break_bar: int) -> int:
    """Bar of the lowest low between the broken swing high and the break (the leg's origin)."""
    return int(swing_bar + np.argmin(low[swing_bar : break_bar + 1]))


def retracement(lo: float, hi: float, ratio: float) -> float:
    """Price ``ratio`` of the way back from the end ``hi`` of an up-leg toward ``lo``."""
    return hi - ratio * (hi - lo)


def ote_zone(lo: float, hi: float, ote_low: float, ote_high: float) -> tuple[float, float]:
    """(bottom, top) of the optimal trade entry zone of an up-leg ``lo..hi``."""
    return retracement(lo, hi, ote_high), retracement(lo, hi, ote_low)


class PriceZone(StrEnum):
    PREMIUM = "premium"
    EQUILIBRIUM = "equilibrium"
    DISCOUNT = "discount"


def premium_discount(lo: float, hi: float, price: float) -> PriceZone:
    """Where ``price`` sits in the range ``lo..hi`` relative to its midpoint."""
    mid = (lo + hi) / 2
    if price < mid:
        return PriceZone.DISCOUNT
    if price > mid:
        return PriceZone.PREMIUM
    return PriceZone.EQUILIBRIUM
