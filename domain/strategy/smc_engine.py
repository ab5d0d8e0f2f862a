"""The SMC entry engine of one timeframe: setups from structure breaks, entries from zones.

Built once from a whole series (:class:`SmcEngine`), evaluated at any bar ``t`` with
:meth:`SmcEngine.evaluate`, which reads only what is known at the close of ``t``: swings
confirmed by ``t``, breaks at or before ``t``, zones formed before ``t`` and untouched until ``t``.
That is what lets a backtest build the engine once and evaluate every bar, and what the
no-look-ahead test checks (a prefix of the series gives the same answer at ``t``).

Entry rule for a long (shorts are the same rule on the price-mirrored series):

1. The last structure break at or before ``t`` is upward, happened at bar ``j < t``, and at most
   ``setup_max_bars`` bars ago. Its impulse leg starts at the lowest low between the broken swing
   high and the break (the *origin*, also the invalidation swing); no close since ``j`` is below it.
2. The leg ``lo..hi`` (``hi`` = highest high from the origin to ``t - 1``) spans at least
   ``min_leg_atr`` ATRs. Its OTE zone is the ``ote_low..ote_high`` retracement band.
3. Bar ``t`` makes the first touch of an unmitigated zone of the leg (the order block of the break,
   or a bullish fair value gap formed inside the leg) where that zone overlaps the OTE band, and
   closes at or above the overlap's bottom. The overlap is the entry zone; the entry price is the
   close clamped into it, and must be in discount when ``require_discount``.
4. Stop: ``stop_buffer_atr`` ATRs below the origin. Targets: resting buy-side liquidity above the
   entry (the leg's high and confirmed swing highs not traded through since), nearest first;
   the strategy keeps those at least ``min_rr`` risks away (after rounding), at most
   ``max_targets``, and drops the setup if none is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from domain.strategy.base import Bars, FloatArray, IntArray
from domain.strategy.smc_params import SmcParams
from domain.strategy.smc_structure import (
    Structure,
    Swings,
    Trend,
    liquidity_sweeps,
    market_structure,
)
from domain.strategy.smc_zones import (
    Gaps,
    average_true_range,
    bullish_order_block,
    fair_value_gaps,
    impulse_origin,
    ote_zone,
)


@dataclass(frozen=True, slots=True)
class Setup:
    """An entry found by the engine, in real prices (not rounded to the instrument's grid)."""

    direction: Trend
    entry: float
    stop: float
    targets: tuple[float, ...]  # resting liquidity beyond the entry, nearest first
    zone: tuple[float, float]  # (low, high) of the entry zone
    break_bar: int
    choch: bool
    order_block: bool
    fair_value_gap: bool
    sweep: bool
    structure_aligned: bool  # last swing labels HH+HL (long) or LL+LH (short, mirrored)


class _View:
    """One direction's arrays: the series itself (longs) or its price mirror (shorts).

    Mirroring negates prices and swaps highs with lows, so a bearish setup is a bullish one of
    the mirror and one code path serves both sides.
    """

    def __init__(
        self, bars: Bars, structure: Structure, atr: FloatArray, params: SmcParams, mirrored: bool
    ) -> None:
        if mirrored:
            self.open, self.close = -bars.open, -bars.close
            self.high, self.low = -bars.low, -bars.high
            lows = structure.lows
            self.highs = Swings(lows.index, -lows.level, lows.confirmed)
            self.lows = Swings(
                structure.highs.index, -structure.highs.level, structure.highs.confirmed
            )
        else:
            self.open, self.close = bars.open, bars.close
            self.high, self.low = bars.high, bars.low
            self.highs, self.lows = structure.highs, structure.lows
        self._bars = bars
        self._atr = atr
        self._structure = structure
        self._min_atr = params.fvg_min_atr
        self._mirrored = mirrored

    @cached_property
    def gaps(self) -> Gaps:
        """Bullish gaps of this view (the series' bearish gaps, mirrored, for shorts)."""
        return fair_value_gaps(self.high, self.low, self._atr, self._min_atr)[0]

    @cached_property
    def sell_side_sweeps(self) -> IntArray:
        """Bars sweeping liquidity below a swing low of this view."""
        b = self._bars
        buy, sell = liquidity_sweeps(b.high, b.low, b.close, self._structure)
        return buy if self._mirrored else sell


class SmcEngine:
    """Structure, zones and entries of one timeframe's bars (see the module docstring)."""

    def __init__(self, bars: Bars, params: SmcParams) -> None:
        self.bars = bars
        self.params = params
        self.structure = market_structure(
            bars.high, bars.low, bars.close, params.swing_left, params.swing_right
        )
        self._views: dict[int, _View] = {}

    @cached_property
    def atr(self) -> FloatArray:
        b = self.bars
        return average_true_range(b.high, b.low, b.close, self.params.atr_period)

    def trend_at(self, t: int) -> Trend:
        """Structure direction known at the close of bar ``t`` (``NONE`` before any break)."""
        return Trend.NONE if t < 0 else self.structure.breaks.trend_at(t)

    def _view(self, direction: Trend) -> _View:
        view = self._views.get(direction)
        if view is None:
            view = _View(
                self.bars, self.structure, self.atr, self.params, mirrored=direction is Trend.DOWN
            )
            self._views[direction] = view
        return view

    def evaluate(self, t: int, direction: Trend) -> Setup | None:
        """The entry at bar ``t`` in ``direction``, or None."""
        p = self.params
        breaks = self.structure.breaks
        k = breaks.last_before(t)
        if direction is Trend.NONE or k < 0 or breaks.direction[k] != direction:
            return None
        j = int(breaks.bar[k])
        if j >= t or t - j > p.setup_max_bars:
            return None
        v = self._view(direction)
        sign = float(direction)
        origin = impulse_origin(v.low, int(breaks.swing_bar[k]), j)
        leg_lo = float(v.low[origin])
        if float(v.close[j + 1 : t + 1].min()) < leg_lo:
            return None
        leg_hi = float(v.high[origin:t].max())
        atr = float(self.atr[t])
        if leg_hi - leg_lo <= 0 or leg_hi - leg_lo < p.min_leg_atr * atr:
            return None
        ote_bottom, ote_top = ote_zone(leg_lo, leg_hi, p.ote_low, p.ote_high)
        low_t, close_t = float(v.low[t]), float(v.close[t])
        if low_t > ote_top or close_t < ote_bottom:
            return None
        touched = [
            (name, max(bottom, ote_bottom), min(top, ote_top))
            for name, bottom, top in self._fresh_zones(v, origin, j, t)
        ]
        touched = [z for z in touched if z[1] <= z[2] and low_t <= z[2] and close_t >= z[1]]
        if not touched:
            return None
        zone_lo = min(z[1] for z in touched)
        zone_hi = max(z[2] for z in touched)
        entry = min(max(close_t, zone_lo), zone_hi)
        if p.require_discount and entry >= (leg_lo + leg_hi) / 2:
            return None
        stop = leg_lo - p.stop_buffer_atr * atr
        targets = self._targets(v, entry, entry - stop, leg_hi, t)
        if not targets:
            return None
        sweeps = v.sell_side_sweeps
        lo_i = np.searchsorted(sweeps, origin - p.sweep_lookback, side="left")
        hi_i = np.searchsorted(sweeps, j, side="right")
        names = {z[0] for z in touched}
        return Setup(
            direction=direction,
            entry=sign * entry,
            stop=sign * stop,
            targets=tuple(sign * x for x in targets),
            zone=(zone_lo, zone_hi) if sign > 0 else (-zone_hi, -zone_lo),
            break_bar=j,
            choch=bool(breaks.choch[k]),
            order_block="order_block" in names,
            fair_value_gap="fair_value_gap" in names,
            sweep=bool(hi_i > lo_i),
            structure_aligned=self._aligned(v, t),
        )

    def _fresh_zones(self, v: _View, origin: int, j: int, t: int) -> list[tuple[str, float, float]]:
        """Zones of the leg not traded into before bar ``t``: (name, bottom, top)."""
        zones: list[tuple[str, float, float]] = []
        ob = bullish_order_block(v.open, v.close, origin, self.params.ob_lookback)
        if ob >= 0:
            top = float(v.high[ob])
            if j + 1 >= t or float(v.low[j + 1 : t].min()) > top:
                zones.append(("order_block", float(v.low[ob]), top))
        gaps = v.gaps
        a = int(np.searchsorted(gaps.index, origin + 2, side="left"))
        b = int(np.searchsorted(gaps.index, t, side="left"))
        if b > a:
            index = gaps.index[a:b]
            start = int(index[0]) + 1
            segment = v.low[start:t]
            suffix_min = np.append(np.minimum.accumulate(segment[::-1])[::-1], np.inf)
            after = suffix_min[index + 1 - start]
            fresh = after > gaps.top[a:b]
            zones.extend(
                ("fair_value_gap", float(lo), float(hi))
                for lo, hi in zip(gaps.bottom[a:b][fresh], gaps.top[a:b][fresh], strict=True)
            )
        return zones

    @staticmethod
    def _targets(v: _View, entry: float, risk: float, leg_hi: float, t: int) -> list[float]:
        """Resting liquidity above ``entry`` at least ``min_rr`` risks away, nearest first."""
        highs = v.highs
        known = int(np.searchsorted(highs.confirmed, t, side="right"))
        levels = highs.level[:known]
        above = levels > entry
        candidates = [leg_hi] if float(v.high[t]) < leg_hi else []
        if above.any():
            conf = highs.confirmed[:known][above]
            start = int(conf.min()) + 1
            segment = v.high[start : t + 1]
            suffix_max = np.append(np.maximum.accumulate(segment[::-1])[::-1], -np.inf)
            untouched = suffix_max[conf + 1 - start] < levels[above]
            candidates.extend(float(x) for x in levels[above][untouched])
        return sorted({c for c in candidates if c > entry})

    @staticmethod
    def _aligned(v: _View, t: int) -> bool:
        """True when the last two confirmed swing highs and lows both rise (HH and HL)."""
        result = True
        for swings in (v.highs, v.lows):
            known = int(np.searchsorted(swings.confirmed, t, side="right"))
            result = result and known >= 2 and swings.level[known - 1] > swings.level[known - 2]
        return result
