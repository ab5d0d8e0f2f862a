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
