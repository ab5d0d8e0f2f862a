"""The ``ema_cross`` strategy: a crossover at the last bar and nothing otherwise."""

from decimal import Decimal
from itertools import pairwise

import numpy as np
import pytest

from domain.models import PositionSide
from domain.strategy.base import StrategyConfigError
from domain.strategy.ema_cross import EmaCrossStrategy, ema
from tests.domain.strategy.builders import INSTRUMENT, bars, random_walk


def test_ema_matches_its_recursion() -> None:
    values = np.array([1.0, 2.0, 3.0])
    assert ema(values, 3).tolist() == [1.0, 1.5, 2.25]


def _series(closes: list[float]) -> dict:
    c = np.array(closes)
    return {"15m": bars("15m", c + 0.5, c - 0.5, opens=c, closes=c)}


def test_long_on_an_upward_cross_with_stop_and_target() -> None:
    strategy = EmaCrossStrategy({"fast": 2, "slow": 4, "atr_period": 2}, (), ("15m",))
    data = _series([10, 9.8, 9.6, 9.4, 9.2, 9.0, 8.8, 9.6])
    signal = strategy.analyze(data, INSTRUMENT)
    assert signal is not None
    assert signal.side is PositionSide.LONG
    assert signal.entry_price == Decimal("9.60")
    risk = signal.entry_price - signal.stop_price
    assert risk > 0
    assert signal.targets[0] - signal.entry_price == pytest.approx(2 * risk, abs=Decimal("0.02"))
    assert signal.created_at == data["15m"].close_time[-1]
    # one bar earlier there was no cross
    earlier = {"15m": data["15m"].head(7)}
    assert strategy.analyze(earlier, INSTRUMENT) is None


def test_short_on_a_downward_cross() -> None:
    strategy = EmaCrossStrategy({"fast": 2, "slow": 4}, (), ("15m",))
    signal = strategy.analyze(_series([10, 10.2, 10.4, 10.6, 10.8, 11, 11.2, 10.4]), INSTRUMENT)
    assert signal is not None
    assert signal.side is PositionSide.SHORT
    assert signal.stop_price > signal.entry_price > signal.targets[0]


def test_signals_alternate_on_a_random_walk() -> None:
    strategy = EmaCrossStrategy({}, (), ("15m",))
    b = random_walk("15m", 600, seed=2)
    sides = [
        s.side
        for n in range(30, 600)
        if (s := strategy.analyze({"15m": b.head(n)}, INSTRUMENT)) is not None
    ]
    assert len(sides) > 5
    assert all(a is not b for a, b in pairwise(sides))


def test_params_are_validated() -> None:
    with pytest.raises(StrategyConfigError, match="fast < slow"):
        EmaCrossStrategy({"fast": 30, "slow": 20})


def test_carried_emas_give_the_signals_of_a_recomputation_on_every_bar() -> None:
    """One instance fed bar after bar (the analyzer's way) and a fresh instance per bar
    (recomputing over the whole series) propose exactly the same signals."""
    data = random_walk("15m", 400, seed=11)
    carried = EmaCrossStrategy({"fast": 3, "slow": 8}, (), ("15m",))
    crosses = 0
    for n in range(2, len(data) + 1):
        window = {"15m": data.head(n)}
        fresh = EmaCrossStrategy({"fast": 3, "slow": 8}, (), ("15m",))
        expected = fresh.analyze(window, INSTRUMENT)
        assert carried.analyze(window, INSTRUMENT) == expected
        assert carried.analyze(window, INSTRUMENT) == expected  # the same bar again: no change
        crosses += expected is not None
    assert crosses >= 10


def test_bars_that_do_not_continue_the_carry_start_it_afresh() -> None:
    data = random_walk("15m", 120, seed=3)
    strategy = EmaCrossStrategy({"fast": 3, "slow": 8}, (), ("15m",))
    strategy.analyze({"15m": data.head(60)}, INSTRUMENT)
    # a gap of 30 bars (the carried bar is inside the window), then an unrelated window
    fresh = EmaCrossStrategy({"fast": 3, "slow": 8}, (), ("15m",))
    assert strategy._diffs(data.head(90)) == fresh._diffs(data.head(90))
    # a window that does not hold the carried bar: the carry starts again from its first bar
    late = random_walk("15m", 50, seed=4)
    late = type(late)(
        "15m", late.open_time + 10**9, late.open, late.high, late.low, late.close, late.volume
    )
    fresh = EmaCrossStrategy({"fast": 3, "slow": 8}, (), ("15m",))
    assert strategy._diffs(late) == fresh._diffs(late)
