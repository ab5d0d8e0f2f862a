"""The ``ema_cross`` strategy: a plain moving-average crossover, for tests and comparisons.

Reads only the first entry timeframe. At the last closed bar, a fast EMA crossing above the slow
one is a long, crossing below a short. Entry at the close, stop ``stop_atr`` ATRs away, one target
at ``reward_risk`` times the risk. The EMAs start from the first close of the buffer, so give it
several ``slow`` periods of history for stable values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain.models import Instrument, PositionSide, Signal
from domain.strategy.base import FloatArray, StrategyConfigError, require_timeframes
from domain.strategy.params import params_from_mapping
from domain.strategy.smc_zones import average_true_range


@dataclass(frozen=True, slots=True)
class EmaCrossParams:
    """``fast`` (9) and ``slow`` (21): EMA periods in bars; ``atr_period`` (14);
    ``stop_atr`` (1.5): stop distance in ATRs; ``reward_risk`` (2.0): target distance in risks;
    ``score`` (0.5): the score of every signal; ``signal_expiry_bars`` (2)."""

    fast: int = 9
    slow: int = 21
    atr_period: int = 14
    stop_atr: float = 1.5
    reward_risk: float = 2.0
    score: float = 0.5
    signal_expiry_bars: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError("need 1 <= fast < slow")
        if self.atr_period < 1 or self.signal_expiry_bars < 1:
            raise ValueError("atr_period and signal_expiry_bars must be at least 1")
        if self.stop_atr <= 0 or self.reward_risk <= 0 or not 0 <= self.score <= 1:
            raise ValueError("stop_atr and reward_risk must be positive, score in 0..1")


def ema(values: FloatArray, period: int) -> FloatArray:
    """Exponential moving average with ``alpha = 2 / (period + 1)``, seeded with the first value."""
    alpha = 2.0 / (period + 1)
    out = np.empty(len(values))
    acc = float(values[0]) if len(values) else 0.0
    for i, x in enumerate(values.tolist()):
        acc += alpha * (x - acc)
        out[i] = acc
    return out


class EmaCrossStrategy:
    """Built-in ``ema_cross`` strategy (see the module docstring)."""

    name = "ema_cross"

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        bias_timeframes: Sequence[str] = (),
        entry_timeframes: Sequence[str] = ("15m",),
    ) -> None:
        self.params = params_from_mapping(EmaCrossParams, params or {}, "ema_cross")
        if not entry_timeframes:
            raise StrategyConfigError("ema_cross needs an entry timeframe")
        self.timeframe = entry_timeframes[0]
        self.timeframes = (self.timeframe,)

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        p = self.params
        bars = require_timeframes(data, self.timeframes)[self.timeframe]
        if len(bars) < p.slow + 1:
            return None
        diff = ema(bars.close, p.fast) - ema(bars.close, p.slow)
        if diff[-2] <= 0 < diff[-1]:
            side = PositionSide.LONG
        elif diff[-2] >= 0 > diff[-1]:
            side = PositionSide.SHORT
        else:
            return None
        sign = 1 if side is PositionSide.LONG else -1
        close = float(bars.close[-1])
        risk = p.stop_atr * float(
            average_true_range(bars.high, bars.low, bars.close, p.atr_period)[-1]
        )
        entry = instrument.round_price(close)
        stop = instrument.stop_price(close - sign * risk, side)
        target = instrument.round_price(close + sign * p.reward_risk * risk)
        if (entry - stop) * sign <= 0 or (target - entry) * sign <= 0:
            return None
        at_ms = int(bars.close_time[-1])
        return Signal(
            symbol=instrument.symbol,
            side=side,
            entry_price=entry,
            stop_price=stop,
            targets=(target,),
            score=p.score,
            reasons=(f"ema_{p.fast}_{'above' if sign > 0 else 'below'}_{p.slow}_{self.timeframe}",),
            created_at=at_ms,
            expires_at=at_ms + p.signal_expiry_bars * bars.tf_ms,
            strategy=self.name,
            timeframe=self.timeframe,
        )
