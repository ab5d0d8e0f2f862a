"""Swings, HH/HL labels, BOS/CHoCH and liquidity sweeps on small hand-built series."""

import numpy as np
import pytest

from domain.strategy.smc_structure import (
    BreakKind,
    Trend,
    liquidity_sweeps,
    market_structure,
    structure_labels,
    swing_points,
)


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_swing_points_need_left_and_right_bars_and_confirm_late() -> None:
    highs = arr(1, 2, 5, 2, 1, 2, 3, 2, 1)
    lows = highs - 1
    sh, sl = swing_points(highs, lows, left=2, right=2)
    assert sh.index.tolist() == [2, 6]
    assert sh.level.tolist() == [5, 3]
    assert sh.confirmed.tolist() == [4, 8]
    assert sl.index.tolist() == [4]
    # too short for any window
    sh, sl = swing_points(highs[:4], lows[:4], left=2, right=2)
    assert len(sh) == len(sl) == 0


def test_equal_highs_count_once_at_the_first() -> None:
    highs = arr(1, 3, 3, 1, 0)
    sh, _ = swing_points(highs, highs - 1, left=1, right=1)
    assert sh.index.tolist() == [1]


# left=right=1. Swing highs at 1 (12) and 5 (14); swing low at 2 (10).
HIGHS = arr(10, 12, 11, 11.5, 13, 14, 12, 11, 10, 9)
LOWS = arr(9, 11, 10, 10.5, 12, 13, 11, 10, 9, 8)
CLOSES = arr(9.5, 11.5, 10.5, 11, 12.8, 13.5, 11.5, 10.2, 9.2, 8.5)


def test_bos_then_choch() -> None:
    s = market_structure(HIGHS, LOWS, CLOSES, left=1, right=1)
    assert s.highs.index.tolist() == [1, 5]
    assert s.lows.index.tolist() == [2]
    b = s.breaks
    # bar 4 closes above the swing high at 1 (12): first break, a BOS up;
    # bar 8 closes below the swing low at 2 (10): against the trend, a CHoCH down.
    assert b.bar.tolist() == [4, 8]
    assert b.direction.tolist() == [1, -1]
    assert b.swing_bar.tolist() == [1, 2]
    assert b.level.tolist() == [12, 10]
    assert [b.kind(0), b.kind(1)] == [BreakKind.BOS, BreakKind.CHOCH]
    assert [b.trend_at(t) for t in (3, 4, 7, 8, 9)] == [
        Trend.NONE,
        Trend.UP,
        Trend.UP,
        Trend.DOWN,
        Trend.DOWN,
    ]
    assert s.high_broken_at.tolist() == [4, len(CLOSES)]  # the swing high at 5 never broke


def test_a_wick_through_the_level_is_not_a_break() -> None:
    closes = CLOSES.copy()
    closes[4] = 11.9  # high 13 pierces 12 but the close stays below
    s = market_structure(HIGHS, LOWS, closes, left=1, right=1)
    assert 4 not in s.breaks.bar.tolist()


def test_second_break_in_the_same_direction_is_a_bos() -> None:
    highs = arr(10, 12, 11, 11.5, 13, 12.5, 12.8, 14.5, 14)
    lows = highs - 1
    closes = arr(9.5, 11.5, 10.5, 11, 12.8, 12, 12.5, 14.2, 13.5)
    s = market_structure(highs, lows, closes, left=1, right=1)
    # swing high 1 (12) broken at 4; swing high 4 (13) confirmed at 5, broken at 7
    assert s.breaks.bar.tolist() == [4, 7]
    assert not s.breaks.choch.any()


def test_structure_labels() -> None:
    highs = arr(1, 3, 1, 4, 1, 2, 1)
    lows = arr(0, 2, -1, 3, 0.5, 1.5, 0.2)
    sh, sl = swing_points(highs, lows, left=1, right=1)
    assert structure_labels(sh, highs=True) == ("", "HH", "LH")
    assert structure_labels(sl, highs=False) == ("", "HL")


def test_liquidity_sweeps_wick_through_and_close_back() -> None:
    highs = arr(10, 11, 10.5, 11, 10.8, 11.2)
    lows = arr(9, 9.5, 8, 9.5, 7.5, 9)
    closes = arr(9.5, 10, 9, 10.5, 9.0, 10)
    s = market_structure(highs, lows, closes, left=1, right=1)
    buy, sell = liquidity_sweeps(highs, lows, closes, s)
    assert sell.tolist() == [4]  # low 7.5 under the swing low 8 (bar 2), close 9 back above
    assert buy.tolist() == [5]  # high 11.2 over the swing high 11 (bar 3), close 10 back below
    assert len(s.breaks) == 0


def test_a_close_through_is_a_break_not_a_sweep() -> None:
    highs = arr(10, 11, 10.5, 11, 10.8, 11.2)
    lows = arr(9, 9.5, 8, 9.5, 7.5, 9)
    closes = arr(9.5, 10, 9, 10.5, 7.8, 10)
    s = market_structure(highs, lows, closes, left=1, right=1)
    _, sell = liquidity_sweeps(highs, lows, closes, s)
    assert sell.tolist() == []
    assert s.breaks.bar.tolist() == [4]


def test_swing_points_reject_zero_windows() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        swing_points(HIGHS, LOWS, left=0, right=1)
