"""The ``ema_cross`` strategy: a plain moving-average crossover, for tests and comparisons.

Reads only the first entry timeframe. At the last closed bar, a fast EMA crossing above the slow
one is a long, crossing below a short. Entry at the close, stop ``stop_atr`` ATRs away, one target
at ``reward_risk`` times the risk. The EMAs start from the first close of the buffer, so give it
several ``slow`` periods of history for stable values.

The EMAs are carried from bar to bar: each analysis folds in only the bars added since the
previous one (O(1) per bar, not O(buffer)), with the same recursion and seed as a recomputation
over the buffer. So the EMAs run from the first close this instance saw: once the analyzer's
buffer rolls over, they keep the older history instead of re-seeding from the buffer's oldest
bar (a difference of ``(1 - alpha) ** max_bars``, below float precision for sensible periods).
Bars that do not continue the carried ones (a gap, a replaced buffer) start the carry afresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain.models import Instrument, PositionSide, Signal
from domain.strategy.base import Bars, FloatArray, StrategyConfigError, require_timeframes
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


@dataclass(slots=True)
class _Carry:
    """The EMAs after the bar that opened at ``last_time``, and the last two differences."""

    last_time: int
    fast: float
    slow: float
    prev_diff: float
    diff: float


def _fold(carry: _Carry, closes: list[float], alpha_fast: float, alpha_slow: float) -> None:
    fast, slow, diff = carry.fast, carry.slow, carry.diff
    prev = carry.prev_diff
    for x in closes:
        fast += alpha_fast * (x - fast)
        slow += alpha_slow * (x - slow)
        prev, diff = diff, fast - slow
    carry.fast, carry.slow, carry.prev_diff, carry.diff = fast, slow, prev, diff


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
        self._carry: _Carry | None = None
        self._alphas = (2.0 / (self.params.fast + 1), 2.0 / (self.params.slow + 1))

    def _diffs(self, bars: Bars) -> tuple[float, float]:
        """(difference fast - slow at the bar before last, at the last bar)."""
        times = bars.open_time
        last_time = int(times[-1])
        carry = self._carry
        start = None
        if carry is not None:
            if carry.last_time == last_time:
                return carry.prev_diff, carry.diff
            if int(times[-2]) == carry.last_time:
                start = len(times) - 1
            else:
                at = int(np.searchsorted(times, carry.last_time))
                if at < len(times) and int(times[at]) == carry.last_time:
                    start = at + 1
        if carry is None or start is None:
            seed = float(bars.close[0])
            carry = self._carry = _Carry(last_time, seed, seed, 0.0, 0.0)
            start = 0
        _fold(carry, bars.close[start:].tolist(), *self._alphas)
        carry.last_time = last_time
        return carry.prev_diff, carry.diff

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        p = self.params
        bars = require_timeframes(data, self.timeframes)[self.timeframe]
        if len(bars) < p.slow + 1:
            return None
        before, now = self._diffs(bars)
        if before <= 0 < now:
            side = PositionSide.LONG
        elif before >= 0 > now:
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
