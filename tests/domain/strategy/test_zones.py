"""ATR, fair value gaps, order blocks, Fibonacci/OTE and premium/discount."""

import numpy as np
import pytest

from domain.strategy.smc_zones import (
    PriceZone,
    average_true_range,
    bullish_order_block,
    fair_value_gaps,
    gap_filled,
    gap_touched,
    impulse_origin,
    ote_zone,
    premium_discount,
    retracement,
)


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_atr_is_a_causal_simple_mean_of_true_range() -> None:
    high, low, close = arr(11, 12, 13, 12), arr(9, 10, 11, 8), arr(10, 11, 12, 9)
    # true ranges: 2, 2, 2, 4 (|8 - 12| on the last bar)
    atr = average_true_range(high, low, close, period=2)
    assert atr.tolist() == [2, 2, 2, 3]
    assert average_true_range(high[:3], low[:3], close[:3], 2).tolist() == atr[:3].tolist()


def test_fair_value_gaps_both_directions_and_minimum_size() -> None:
    high = arr(10, 12, 13, 12, 9, 8)
    low = arr(9, 10, 11, 10.5, 7, 6)
    atr = np.ones(6)
    bull, bear = fair_value_gaps(high, low, atr, min_atr=0.0)
    # bar 2: low 11 above bar 0's high 10 -> bullish gap 10..11
    assert bull.index.tolist() == [2]
    assert (bull.bottom.tolist(), bull.top.tolist()) == ([10], [11])
    # bar 4: high 9 below bar 2's low 11 -> bearish gap 9..11; bar 5: 8 below 10.5
    assert bear.index.tolist() == [4, 5]
    assert (bear.bottom.tolist(), bear.top.tolist()) == ([9, 8], [11, 10.5])
    bull, bear = fair_value_gaps(high, low, atr * 2, min_atr=1.0)  # gaps under 2 dropped
    assert bull.index.tolist() == []
    assert bear.index.tolist() == [4, 5]


def test_gap_touched_and_filled() -> None:
    low = arr(9, 10, 11, 10.8, 10.5, 9.9)
    # bullish gap 10..11 known at bar 2
    assert not gap_touched(low, 11, index=2, t=2)
    assert gap_touched(low, 11, index=2, t=3)
    assert not gap_filled(low, 10, index=2, t=4)
    assert gap_filled(low, 10, index=2, t=5)


def test_order_block_is_the_last_opposite_candle_before_the_leg() -> None:
    open_ = arr(10, 11, 10.5, 10, 9.5, 10)
    close = arr(11, 10.5, 10, 10.2, 9.4, 12)  # bearish candles at 1, 2 and 4
    assert bullish_order_block(open_, close, origin=4, lookback=10) == 4
    assert bullish_order_block(open_, close, origin=3, lookback=10) == 2
    assert bullish_order_block(open_, close, origin=3, lookback=0) == -1
    low = arr(9, 8, 7, 7.5, 9, 10)
    assert impulse_origin(low, swing_bar=1, break_bar=5) == 2


def test_fibonacci_ote_and_premium_discount() -> None:
    assert retracement(100, 200, 0.5) == 150
    bottom, top = ote_zone(100, 200, 0.618, 0.786)
    assert bottom == pytest.approx(121.4)
    assert top == pytest.approx(138.2)
    assert premium_discount(100, 200, 120) is PriceZone.DISCOUNT
    assert premium_discount(100, 200, 180) is PriceZone.PREMIUM
    assert premium_discount(100, 200, 150) is PriceZone.EQUILIBRIUM
