"""The ``smc`` strategy: higher-timeframe bias gates lower-timeframe SMC entries.

Decisions:

- Bias: the structure direction (last BOS/CHoCH) of each bias timeframe at its last bar closed
  by the evaluation time. All bias timeframes must agree; otherwise there is no trade.
- Evaluation time: the latest close among the entry timeframes' last bars. Only entry timeframes
  whose last bar closes exactly then are evaluated (the others were evaluated at their own
  close), so one closed bar never yields the same signal twice.
- Several entry timeframes with a setup: the highest score wins, ties go to the shorter one.
- Prices are put on the instrument's grid: entry and targets to the nearest tick, the stop toward
  profit (``Instrument.stop_price``); targets closer than ``min_rr`` risks after rounding are
  dropped, and without a target there is no signal.
- :class:`SmcModel` is built once from whole series and evaluated at any time; ``analyze`` is
  that evaluation at the last bar, so backtests and live share one code path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from domain.models import Instrument, PositionSide, Signal
from domain.strategy.base import (
    Bars,
    IntArray,
    StrategyConfigError,
    require_timeframes,
    timeframe_ms,
)
from domain.strategy.params import params_from_mapping
from domain.strategy.smc_engine import Setup, SmcEngine
from domain.strategy.smc_params import SmcParams
from domain.strategy.smc_structure import Trend, market_structure


def _bar_at(close_time: IntArray, at_ms: int) -> int:
    """Index of the last bar closed at or before ``at_ms`` (-1 if none)."""
    return int(np.searchsorted(close_time, at_ms, side="right")) - 1


def _side_word(direction: Trend) -> str:
    return "up" if direction is Trend.UP else "down"


class SmcModel:
    """SMC analysis of one symbol's series, evaluable at any time (ms)."""

    def __init__(
        self,
        data: Mapping[str, Bars],
        params: SmcParams,
        bias_timeframes: Sequence[str],
        entry_timeframes: Sequence[str],
    ) -> None:
        self.params = params
        self._bias = []
        for tf in bias_timeframes:
            bars = data[tf]
            structure = market_structure(
                bars.high, bars.low, bars.close, params.swing_left, params.swing_right
            )
            self._bias.append((tf, bars.close_time, structure.breaks))
        self._entry = [
            (tf, data[tf].close_time, SmcEngine(data[tf], params)) for tf in entry_timeframes
        ]

    @property
    def last_close(self) -> int | None:
        """The evaluation time of ``analyze``: the latest close among entry timeframes."""
        closes = [int(ct[-1]) for _, ct, _ in self._entry if len(ct)]
        return max(closes) if closes else None

    def bias_at(self, at_ms: int) -> Trend:
        """The agreed direction of the bias timeframes at ``at_ms`` (``NONE`` if they differ)."""
        directions = set()
        for _, close_time, breaks in self._bias:
            k = _bar_at(close_time, at_ms)
            directions.add(Trend.NONE if k < 0 else breaks.trend_at(k))
        if len(directions) != 1:
            return Trend.NONE
        return directions.pop()

    def setups_at(self, at_ms: int) -> list[tuple[str, Setup]]:
        """(timeframe, setup) for each entry timeframe with a bar closing at ``at_ms``."""
        bias = self.bias_at(at_ms)
        if bias is Trend.NONE:
            return []
        found = []
        for tf, close_time, engine in self._entry:
            t = _bar_at(close_time, at_ms)
            if t < 0 or int(close_time[t]) != at_ms:
                continue
            setup = engine.evaluate(t, bias)
            if setup is not None:
                found.append((tf, setup))
        return found

    def signal_at(self, at_ms: int, instrument: Instrument, name: str = "smc") -> Signal | None:
        """The signal at ``at_ms`` from what was known then."""
        best: Signal | None = None
        best_key: tuple[float, int] | None = None
        for tf, setup in self.setups_at(at_ms):
            signal = self._signal(tf, setup, at_ms, instrument, name)
            if signal is None:
                continue
            key = (-signal.score, timeframe_ms(tf))
            if best_key is None or key < best_key:
                best, best_key = signal, key
        return best

    def _signal(
        self, tf: str, setup: Setup, at_ms: int, instrument: Instrument, name: str
    ) -> Signal | None:
        p = self.params
        side = PositionSide.LONG if setup.direction is Trend.UP else PositionSide.SHORT
        sign = 1 if side is PositionSide.LONG else -1
        entry = instrument.round_price(setup.entry)
        stop = instrument.stop_price(setup.stop, side)
        risk = (entry - stop) * sign
        if risk <= 0:
            return None
        targets: list[Decimal] = []
        for raw in setup.targets:
            target = instrument.round_price(raw)
            if (target - entry) * sign / risk >= Decimal(repr(p.min_rr)) and target not in targets:
                targets.append(target)
        targets = targets[: p.max_targets]
        if not targets:
            return None
        rr = float((targets[0] - entry) * sign / risk)
        flags = (
            (setup.order_block, p.weight_order_block, "order_block"),
            (setup.fair_value_gap, p.weight_fvg, "fair_value_gap"),
            (setup.sweep, p.weight_sweep, "sell_side_sweep" if sign > 0 else "buy_side_sweep"),
            (setup.choch, p.weight_choch, None),
        )
        score = p.base_score + sum(w for present, w, _ in flags if present)
        score += p.weight_rr * min(1.0, max(0.0, (rr - p.min_rr) / p.min_rr))
        word = _side_word(setup.direction)
        reasons = [f"bias_{word}_{'+'.join(tf_ for tf_, _, _ in self._bias)}"]
        reasons.append(f"{'choch' if setup.choch else 'bos'}_{word}_{tf}")
        reasons.extend(f"{label}_{tf}" for present, _, label in flags[:3] if present)
        reasons.append(f"ote_{p.ote_low:g}-{p.ote_high:g}")
        if p.require_discount:
            reasons.append("discount" if sign > 0 else "premium")
        if setup.structure_aligned:
            reasons.append("hh_hl" if sign > 0 else "lh_ll")
        reasons.append(f"rr_{rr:.2f}")
        lo, hi = setup.zone
        return Signal(
            symbol=instrument.symbol,
            side=side,
            entry_price=entry,
            stop_price=stop,
            targets=tuple(targets),
            score=round(min(1.0, score), 6),
            reasons=tuple(reasons),
            created_at=at_ms,
            expires_at=at_ms + p.signal_expiry_bars * timeframe_ms(tf),
            strategy=name,
            timeframe=tf,
            entry_zone=(instrument.round_price(lo), instrument.round_price(hi)),
        )


class SmcStrategy:
    """Built-in ``smc`` strategy (see the module docstring and :class:`SmcParams`)."""

    name = "smc"

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        bias_timeframes: Sequence[str] = ("4h",),
        entry_timeframes: Sequence[str] = ("15m",),
    ) -> None:
        self.params = params_from_mapping(SmcParams, params or {}, "smc")
        if not bias_timeframes or not entry_timeframes:
            raise StrategyConfigError("smc needs at least one bias and one entry timeframe")
        longest_entry = max(timeframe_ms(tf) for tf in entry_timeframes)
        if min(timeframe_ms(tf) for tf in bias_timeframes) <= longest_entry:
            raise StrategyConfigError("every bias timeframe must be longer than every entry one")
        self.bias_timeframes = tuple(bias_timeframes)
        self.entry_timeframes = tuple(entry_timeframes)
        self.timeframes = (*self.bias_timeframes, *self.entry_timeframes)

    def model(self, data: Mapping[str, Any]) -> SmcModel:
        """The analysis of whole series, for evaluation at any time (backtests, tests)."""
        bars = require_timeframes(data, self.timeframes)
        return SmcModel(bars, self.params, self.bias_timeframes, self.entry_timeframes)

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        model = self.model(data)
        at_ms = model.last_close
        if at_ms is None:
            return None
        return model.signal_at(at_ms, instrument, self.name)
