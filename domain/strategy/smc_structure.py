"""Market structure, vectorised and causal: swings, HH/HL/LH/LL, BOS/CHoCH, liquidity sweeps.

Every function works on whole arrays and reports, for each event, the bar at which it became
known, so a caller evaluating bar ``t`` keeps only what is known at ``t``. Decisions:

- A swing high at bar ``i`` has a high strictly above the ``left`` bars before it and at least
  as high as the ``right`` bars after it (so of equal highs only the first counts); it is known
  at the close of bar ``i + right`` (its *confirmation* bar). Swing lows mirror this.
- The reference level for a break is the most recently confirmed swing of that kind. A break is
  the first bar whose *close* crosses that level while it is the reference (a wick alone is a
  sweep, not a break). A break in the direction of the previous break is a break of structure
  (BOS); against it, a change of character (CHoCH). The first break of a series is a BOS.
- A liquidity sweep is a bar whose wick trades through the reference swing level while its
  close stays on the near side, before the level has been broken by a close.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from domain.strategy.base import BoolArray, FloatArray, IntArray

_EMPTY_I = np.zeros(0, dtype=np.int64)


class Trend(IntEnum):
    """Direction of structure: +1 up, -1 down, 0 not yet known."""

    DOWN = -1
    NONE = 0
    UP = 1


class BreakKind(StrEnum):
    BOS = "bos"
    CHOCH = "choch"


@dataclass(frozen=True, slots=True, eq=False)
class Swings:
    """Swing points of one kind (highs or lows), in bar order."""

    index: IntArray  # bar of the swing
    level: FloatArray  # its high (for highs) or low (for lows)
    confirmed: IntArray  # bar at whose close it is known: index + right

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, slots=True, eq=False)
class Breaks:
    """Structure breaks in time order (ties: down before up)."""

    bar: IntArray  # bar whose close crossed the level
    direction: IntArray  # +1 broke a swing high, -1 broke a swing low
    swing_bar: IntArray  # bar of the swing that was broken
    level: FloatArray  # the broken level
    choch: BoolArray  # True for CHoCH, False for BOS

    def __len__(self) -> int:
        return len(self.bar)

    def kind(self, k: int) -> BreakKind:
        return BreakKind.CHOCH if bool(self.choch[k]) else BreakKind.BOS

    def last_before(self, t: int) -> int:
        """Position of the last break at or before bar ``t``, or -1."""
        return int(np.searchsorted(self.bar, t, side="right")) - 1

    def trend_at(self, t: int) -> Trend:
        """Structure direction known at the close of bar ``t``."""
        k = self.last_before(t)
        return Trend.NONE if k < 0 else Trend(int(self.direction[k]))


def swing_points(high: FloatArray, low: FloatArray, left: int, right: int) -> tuple[Swings, Swings]:
    """Swing highs and swing lows (see the module docstring for the exact rule)."""
    n = len(high)
    if left < 1 or right < 1:
        raise ValueError("left and right must be at least 1")
    if n < left + right + 1:
        empty = Swings(_EMPTY_I, np.zeros(0), _EMPTY_I)
        return empty, empty
    centres = np.arange(left, n - right, dtype=np.int64)
    left_max = sliding_window_view(high, left).max(axis=1)[: n - right - left]
    right_max = sliding_window_view(high[1:], right).max(axis=1)[left : n - right]
    left_min = sliding_window_view(low, left).min(axis=1)[: n - right - left]
    right_min = sliding_window_view(low[1:], right).min(axis=1)[left : n - right]
    h = high[left : n - right]
    lo = low[left : n - right]
    hi_idx = centres[(h > left_max) & (h >= right_max)]
    lo_idx = centres[(lo < left_min) & (lo <= right_min)]
    return (
        Swings(hi_idx, high[hi_idx], hi_idx + right),
        Swings(lo_idx, low[lo_idx], lo_idx + right),
    )


def structure_labels(swings: Swings, highs: bool) -> tuple[str, ...]:
    """``HH``/``LH`` for swing highs or ``HL``/``LL`` for swing lows, versus the previous one.

    The first swing has no predecessor and is labelled ``""``.
    """
    if len(swings) == 0:
        return ()
    up = np.diff(swings.level) > 0
    rise, fall = ("HH", "LH") if highs else ("HL", "LL")
    labels = np.where(up, rise, fall)
    return ("", *(str(x) for x in labels))


def reference_swing(swings: Swings, n: int) -> IntArray:
    """For each bar, the ordinal of the most recently confirmed swing (-1 before the first)."""
    mark = np.full(n, -1, dtype=np.int64)
    inside = swings.confirmed < n
    mark[swings.confirmed[inside]] = np.arange(len(swings), dtype=np.int64)[inside]
    return np.maximum.accumulate(mark) if n else mark


def _first_cross(crossed: BoolArray, ref: IntArray) -> tuple[IntArray, IntArray]:
    """(swing ordinals, first bar) for each reference swing crossed at least once."""
    bars = np.flatnonzero(crossed)
    ordinals, first = np.unique(ref[bars], return_index=True)
    return ordinals.astype(np.int64), bars[first].astype(np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class Structure:
    """Everything structural about one series of bars."""

    highs: Swings
    lows: Swings
    ref_high: IntArray  # per bar: ordinal of the reference swing high (-1: none)
    ref_low: IntArray
    high_broken_at: IntArray  # per swing high ordinal: bar of its break (n: not broken)
    low_broken_at: IntArray
    breaks: Breaks


def market_structure(
    high: FloatArray, low: FloatArray, close: FloatArray, left: int, right: int
) -> Structure:
    """Swings, reference levels and structure breaks (BOS/CHoCH) of one series."""
    n = len(close)
    highs, lows = swing_points(high, low, left, right)
    ref_h = reference_swing(highs, n)
    ref_l = reference_swing(lows, n)
    level_h = np.where(ref_h >= 0, highs.level[np.maximum(ref_h, 0)] if len(highs) else 0, np.inf)
    level_l = np.where(ref_l >= 0, lows.level[np.maximum(ref_l, 0)] if len(lows) else 0, -np.inf)
    up_ord, up_bar = _first_cross(close > level_h, ref_h)
    dn_ord, dn_bar = _first_cross(close < level_l, ref_l)
    high_broken_at = np.full(len(highs), n, dtype=np.int64)
    high_broken_at[up_ord] = up_bar
    low_broken_at = np.full(len(lows), n, dtype=np.int64)
    low_broken_at[dn_ord] = dn_bar

    bar = np.concatenate((dn_bar, up_bar))
    direction = np.concatenate(
        (np.full(len(dn_bar), -1, dtype=np.int64), np.ones(len(up_bar), dtype=np.int64))
    )
    swing_bar = np.concatenate((lows.index[dn_ord], highs.index[up_ord]))
    level = np.concatenate((lows.level[dn_ord], highs.level[up_ord]))
    order = np.lexsort((direction, bar))
    bar, direction, swing_bar, level = bar[order], direction[order], swing_bar[order], level[order]
    previous = np.concatenate(([0], direction[:-1]))
    choch = (previous != 0) & (previous != direction)
    return Structure(
        highs,
        lows,
        ref_h,
        ref_l,
        high_broken_at,
        low_broken_at,
        Breaks(bar, direction, swing_bar, level, choch),
    )


def liquidity_sweeps(
    high: FloatArray, low: FloatArray, close: FloatArray, structure: Structure
) -> tuple[IntArray, IntArray]:
    """Bars of buy-side sweeps (wick above the reference high, close at or below it) and of
    sell-side sweeps (wick below the reference low, close at or above it)."""
    bars = np.arange(len(close), dtype=np.int64)
    result: list[IntArray] = []
    for swings, ref, broken, above in (
        (structure.highs, structure.ref_high, structure.high_broken_at, True),
        (structure.lows, structure.ref_low, structure.low_broken_at, False),
    ):
        if len(swings) == 0:
            result.append(_EMPTY_I)
            continue
        ordinal = np.maximum(ref, 0)
        level = swings.level[ordinal]
        unbroken = (ref >= 0) & (broken[ordinal] > bars)
        if above:
            hit = unbroken & (high > level) & (close <= level)
        else:
            hit = unbroken & (low < level) & (close >= level)
        result.append(np.flatnonzero(hit).astype(np.int64))
    return result[0], result[1]
