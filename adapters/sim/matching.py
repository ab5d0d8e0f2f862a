"""Price-driven matching: prices move, triggers fire, resting limits fill.

Rules (all deterministic; time only moves through these calls):

- **Triggers.** A stop (``stp``) sells when its signal price is at or below the trigger price and
  buys when it is at or above; a take-profit is the mirror image. The signal is the order's
  ``trigger_signal``: ``last`` or ``mark``. A fired trigger keeps its order id, becomes a market
  order (no limit price) and fills as a taker at the then-current last price with slippage, or
  becomes a limit order (stop-limit) that fills at once if marketable and rests otherwise.
- **Resting limits** fill as makers at their limit price when the last price touches it (buy:
  ``last <= limit``, sell: ``last >= limit``), limited to the symbol's remaining liquidity for
  the current candle or tick (``participation * volume``), shared in order priority.
- **Gaps.** ``set_price`` jumps straight to the new price: a stop passed by a gap fills at the
  gapped price (plus slippage), not at its trigger price.
- **Candles.** ``on_candle`` walks the path open -> low -> high -> close for a candle that closes at
  or above its open, and open -> high -> low -> close otherwise. On each leg it stops at every
  trigger, limit and liquidation price lying strictly inside the leg, nearest first, so orders
  fire in the order the price would reach them. The mark follows the last price along the path.
  The open is reached at ``open_time``, the three legs end at +20 s, +40 s and +59.999 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from math import isfinite

from adapters.sim.accounts import ZERO, Position
from adapters.sim.core import EngineCore
from adapters.sim.models import CandleBar, OrderKind, Reason, SimFill, SimOrder, TriggerSignal
from domain.errors import PrecisionError
from domain.models import Candle, Instrument, Side
from domain.precision import Number, Rounding, to_decimal

_LEG_OFFSETS_MS = (0, 20_000, 40_000, 59_999)
_GRID_CACHE_SIZE = 65_536  # prices put on the tick grid, remembered per symbol
# the share of an account's balance and notional its worst-case margin surplus must keep for a
# candle walk to be ruled liquidation-free (far above float error; costs only a walk)
_LIQUIDATION_SAFETY = 1e-6
_BOUND_TERMS_KEPT = 4096  # positions' and orders' float terms remembered for the bound
# relative widths of the price bands around the marks the bound is tried for, widest first
_BANDS = (Decimal("0.1"), Decimal("0.03"))


def candle_path(o: Decimal, h: Decimal, low: Decimal, c: Decimal) -> list[Decimal]:
    """The deterministic intra-candle path (see the module docstring)."""
    return [o, low, h, c] if c >= o else [o, h, low, c]


_Ohlc = tuple[Decimal, Decimal, Decimal, Decimal]  # open, high, low, close


def trigger_fires(order: SimOrder, last: Decimal, mark: Decimal) -> bool:
    """Whether a trigger order's condition holds at these prices."""
    if order.stop_price is None:
        return False
    price = mark if order.trigger_signal is TriggerSignal.MARK else last
    below = order.side is Side.SELL
    if order.kind is OrderKind.TAKE_PROFIT:
        below = not below
    return price <= order.stop_price if below else price >= order.stop_price


def limit_marketable(side: Side, limit: Decimal, last: Decimal) -> bool:
    return limit >= last if side is Side.BUY else limit <= last


def may_act(order: SimOrder, low: Decimal, high: Decimal) -> bool:
    """Whether ``order`` triggers or fills at some price in ``[low, high]`` (the mark following
    the last price, as on a candle's path): :func:`trigger_fires` or :func:`limit_marketable`
    holds at ``low`` or at ``high``, the conditions being monotonic in the price."""
    if order.awaiting_trigger:
        return trigger_fires(order, low, low) or trigger_fires(order, high, high)
    limit = order.limit_price
    if limit is None:
        return False
    return limit_marketable(order.side, limit, low) or limit_marketable(order.side, limit, high)


class MatchingCore(EngineCore):
    """Adds price input (ticks and candles) and order matching to the engine core."""

    def set_price(
        self,
        symbol: str,
        last: Number,
        mark: Number | None = None,
        ts: int | None = None,
        volume: Number | None = None,
    ) -> list[SimFill]:
        """Move the last (and mark, default = last) price and match; returns the fills made.

        ``last`` is rounded to the tick; ``ts`` (ms) must not go back in time; ``volume`` (in
        contracts) limits resting-limit fills on this tick when participation is enabled, and is
        added to the current one-minute bar.
        """
        spec = self._instrument(symbol)
        price = spec.instrument.round_price(last)
        if price <= 0:
            raise ValueError(f"{symbol}: price must be positive, got {last!r}")
        self._revision += 1  # a mark moved outside a candle: bands around the marks are stale
        mark_d = price if mark is None else to_decimal(mark)
        vol = ZERO if volume is None else to_decimal(volume)
        self._advance(ts)
        first = len(self._fills)
        self._liquidity[symbol] = self._capacity(symbol, vol) if volume is not None else None
        try:
            self._record_tick_bar(symbol, price, vol)
            self._move(symbol, price, mark_d)
        finally:
            self._liquidity[symbol] = None
        return self._fills[first:]

    def on_candle(self, candle: Candle) -> list[SimFill]:
        """Walk a closed candle's path (module docstring) and match; returns the fills made."""
        return self.on_candles([candle])

    def on_candles(self, candles: Sequence[Candle]) -> list[SimFill]:
        """Walk several symbols' candles of the same minute together, leg by leg.

        All candles must share ``open_time`` (one per symbol); the engine clock visits the open and
        the three leg ends once, each symbol in the given order at each of those times.

        Only symbols where something can happen are walked: one with a resting order the
        candle's range reaches (:func:`may_act`). The others go straight to the close, which is
        what walking their path would leave behind, provided no liquidation can occur
        anywhere during the candle (:meth:`_liquidation_ruled_out`); when one might, every
        symbol holding orders or a position is walked.
        """
        if not candles:
            return []
        start = candles[0].open_time
        if len({c.symbol for c in candles}) != len(candles):
            raise ValueError("one candle per symbol")
        for candle in candles:
            if candle.open_time != start:
                raise ValueError("candles of one call must share open_time")
            # prices gridded later must be numbers now (a sum is finite only if every term is)
            if not isfinite(candle.open + candle.high + candle.low + candle.close + candle.volume):
                raise PrecisionError(f"{candle.symbol} candle at {start} is not finite: {candle}")
        if start < self.now:
            raise ValueError(f"candles at {start} are older than engine time {self.now}")
        books = self._open
        held = self._held_symbols()
        active = [
            (candle, self._grid_ohlc(candle))
            for candle in candles
            if books[candle.symbol] or candle.symbol in held
        ]
        first = len(self._fills)
        walk = [(c, bar) for c, bar in active if self._may_act(c.symbol, bar[2], bar[1])]
        if len(walk) < len(active) and not self._liquidation_ruled_out(active):
            walk = active
        if walk:
            self._walk(start, [(c, candle_path(*bar)) for c, bar in walk])
        self.now = start + _LEG_OFFSETS_MS[-1]  # the clock ends at the last leg, walked or not
        walked = {c.symbol for c, _ in walk}
        closes = {c.symbol: bar[3] for c, bar in active}
        # one bound method for the bars of this call (kept on the engine it would be a cycle)
        last, mark, grid, all_bars = self._last, self._mark, self._grid_ohlc, self._bars
        cap = self.config.max_bars
        for candle in candles:
            symbol = candle.symbol
            if symbol not in walked:
                close = closes.get(symbol)
                if close is not None:
                    last[symbol] = mark[symbol] = close
                else:  # holds nothing: its prices are put on the grid when read
                    last.defer(symbol, candle.close)
                    mark.defer(symbol, candle.close)
            bars = all_bars[symbol]  # _append_bar, inline: it runs for every candle
            if bars and bars[-1].open_time == start:
                bars[-1] = CandleBar(start, candle, grid)
            else:
                bars.append(CandleBar(start, candle, grid))
                if len(bars) > cap + cap // 10:
                    del bars[: len(bars) - cap]
        return self._fills[first:]

    def _walk(self, start: int, walk: list[tuple[Candle, list[Decimal]]]) -> None:
        """Walk these symbols' candle paths leg by leg, stopping at every level inside a leg."""
        try:
            for candle, _ in walk:
                volume = to_decimal(candle.volume)
                self._liquidity[candle.symbol] = self._capacity(candle.symbol, volume)
            self.now = start
            for candle, path in walk:
                self._move(candle.symbol, path[0], path[0])
            for leg in range(1, 4):
                self.now = start + _LEG_OFFSETS_MS[leg]
                for candle, path in walk:
                    symbol = candle.symbol
                    for level in self._levels_between(symbol, path[leg - 1], path[leg]):
                        self._move(symbol, level, level)
                    self._move(symbol, path[leg], path[leg])
        finally:
            for candle, _ in walk:
                self._liquidity[candle.symbol] = None

    def _may_act(self, symbol: str, low: Decimal, high: Decimal) -> bool:
        """Whether an open order of ``symbol`` could trigger or fill in ``[low, high]``."""
        orders = self._orders
        return any(may_act(orders[oid], low, high) for oid in self._open[symbol])

    def _liquidation_ruled_out(self, active: Sequence[tuple[Candle, _Ohlc]]) -> bool:
        """True when no account can reach its liquidation while these candles are walked.

        An account is liquidated when its margin surplus (balance plus every position's
        unrealized PnL less its maintenance margin, :mod:`adapters.sim.accounts`) reaches zero.
        Over a walk the surplus is exactly the opening positions valued at the marks, plus, for
        every fill, its quantity valued at the mark against the price paid or received, less
        its fee; less the maintenance margin of what is held, at most that of the opening
        positions plus every quantity filled. :meth:`_surplus_holds` bounds each of those terms
        below on its own, over the marks a candle's range (and the mark before it) allows and
        over every price and quantity an order could fill at: a limit at its limit price
        (however far outside the range it rests), a taker at the range's far end moved by the
        largest slippage and a tick of rounding, a stop-limit at either. A surplus left above a
        safety margin after all that means no liquidation in any order of events; computed in
        floats, whose error the margin dwarfs.

        The bound only grows with the ranges, so one computed for wide bands around the marks
        (``_BANDS``) holds for every candle inside them: while no order, position, balance or
        mark outside a candle changes (the engine's revision), and every mark and candle stays
        inside its band, that answers at once.
        """
        if not self.config.liquidation:
            return True
        band = self._band
        if band is not None and band[0] == self._revision and self._inside(band[1], active):
            return True
        ranges: dict[str, tuple[float, float]] = {}
        for candle, (_, high, low, _) in active:  # symbols outside it hold nothing
            before = self._mark[candle.symbol]
            ranges[candle.symbol] = (float(min(low, before)), float(max(high, before)))
        held = self._surplus_holds(ranges)
        if held:
            self._band = self._new_band()
        return held

    def _inside(
        self, bounds: dict[str, tuple[Decimal, Decimal]], active: Sequence[tuple[Candle, _Ohlc]]
    ) -> bool:
        """Whether every banded symbol's mark (a symbol missing from these candles keeps it)
        and every one of these candles lies inside its band."""
        mark = self._mark
        for symbol, (lo, hi) in bounds.items():
            if not lo <= mark[symbol] <= hi:
                return False
        for candle, (_, high, low, _) in active:
            band = bounds.get(candle.symbol)
            if band is None or low < band[0] or high > band[1]:
                return False
        return True

    def _new_band(self) -> tuple[int, dict[str, tuple[Decimal, Decimal]]] | None:
        """The widest of ``_BANDS`` around the current marks for which the bound holds (for
        every symbol holding a position or an order), or None."""
        exposed = {s for s, book in self._open.items() if book} | self._held_symbols()
        for width in _BANDS:
            bounds = {}
            for symbol in exposed:
                mark = self._mark[symbol]
                bounds[symbol] = (mark * (1 - width), mark * (1 + width))
            ranges = {s: (float(lo), float(hi)) for s, (lo, hi) in bounds.items()}
            if self._surplus_holds(ranges):
                return self._revision, bounds
        return None

    def _surplus_holds(self, ranges: dict[str, tuple[float, float]]) -> bool:
        """The bound of :meth:`_liquidation_ruled_out` with the marks in ``ranges`` (a symbol
        without one stays at its mark): every account's surplus stays above the safety
        margin."""
        fee, slip, impact = self._bound_rates()
        surplus: dict[str, float] = {a: float(r.balance) for a, r in self._accounts.items()}
        scale = {a: abs(v) for a, v in surplus.items()}
        for key, pos in self._positions.items():
            if not pos.qty:
                continue
            size, entry, mmr = self._position_terms(key, pos)
            symbol = key[1]
            low, high = ranges.get(symbol) or (float(self._mark[symbol]),) * 2
            worst = low if size > 0 else high  # a long is worth least at the low, a short...
            surplus[key[0]] += size * (worst - entry) - abs(size) * high * mmr
            scale[key[0]] += abs(size) * high
        for symbol, book in self._open.items():
            if not book:
                continue
            low, high = ranges.get(symbol) or (float(self._mark[symbol]),) * 2
            for oid in book:
                order = self._orders[oid]
                units, limit, buy, tick, mmr = self._order_terms(oid, order)
                top = max(high, limit or 0.0)  # the dearest it can fill (or be valued) at
                moved = slip + impact * units * top  # the taker's slippage, at most
                if buy:  # paid at most this, valued at least at the low
                    adverse = top * (1 + moved) + tick - low
                else:  # received at least this, valued at most at the high
                    bottom = low if limit is None else min(low, limit)
                    adverse = high - max(bottom * (1 - moved) - tick, 0.0)
                paid = top * (1 + moved) + tick
                surplus[order.account_id] -= units * (adverse + high * mmr + paid * fee)
                scale[order.account_id] += units * paid
        if len(self._bound_terms) > _BOUND_TERMS_KEPT:
            self._bound_terms.clear()
        return all(surplus[a] > _LIQUIDATION_SAFETY * (1 + scale[a]) for a in surplus)

    def _position_terms(self, key: tuple[str, str], pos: Position) -> tuple[float, float, float]:
        """A position's size in units of the quote, entry price and maintenance rate, as floats
        (positions are immutable: the same object, the same terms)."""
        known = self._bound_terms.get(key)
        if known is None or known[0] is not pos:
            spec = self._instrument(pos.symbol)
            size = float(pos.qty) * float(spec.instrument.contract_size)
            terms = (size, float(pos.entry_price), float(spec.maintenance_margin_rate))
            known = self._bound_terms[key] = (pos, terms)
        return known[1]  # type: ignore[no-any-return]

    def _order_terms(
        self, oid: str, order: SimOrder
    ) -> tuple[float, float | None, bool, float, float]:
        """An order's remaining size in contract units, limit price, side, tick and
        maintenance rate, as floats (orders are immutable too)."""
        known = self._bound_terms.get(oid)
        if known is None or known[0] is not order:
            spec = self._instrument(order.symbol)
            terms = (
                float(order.remaining) * float(spec.instrument.contract_size),
                None if order.limit_price is None else float(order.limit_price),
                order.side is Side.BUY,
                float(spec.instrument.tick_size),
                float(spec.maintenance_margin_rate),
            )
            known = self._bound_terms[oid] = (order, terms)
        return known[1]  # type: ignore[no-any-return]

    def _bound_rates(self) -> tuple[float, float, float]:
        """The fee, slippage and impact (per USD of notional) rates the bound charges, for
        the engine's config (remembered while it is the same object)."""
        config = self.config
        known = self._rates
        if known is None or known[0] is not config:
            rates = (
                float(max(config.maker_fee, config.taker_fee)),
                float(config.slippage_bps) / 1e4,
                float(config.impact_bps_per_million) / 1e10,
            )
            known = self._rates = (config, rates)
        return known[1]

    def _grid_ohlc(self, candle: Candle) -> _Ohlc:
        """The candle's open, high, low and close on the tick grid (at least one tick), the
        high and low widened to hold the open and close."""
        grid = self._grid_of(candle.symbol)
        cache = grid[1]
        get = cache.get
        o = get(candle.open) or self._to_grid(grid, candle.open)
        h = get(candle.high) or self._to_grid(grid, candle.high)
        low = get(candle.low) or self._to_grid(grid, candle.low)
        c = get(candle.close) or self._to_grid(grid, candle.close)
        return o, max(h, o, c), min(low, o, c), c

    def _grid_price(self, symbol: str, value: float) -> Decimal:
        """A candle price on the tick grid (as :meth:`_grid_ohlc` puts it there)."""
        grid = self._grid_of(symbol)
        return grid[1].get(value) or self._to_grid(grid, value)

    def _grid_of(self, symbol: str) -> tuple[Instrument, dict[float, Decimal]]:
        """The symbol's instrument and the prices already put on its grid (forgotten if the
        instrument is replaced)."""
        inst = self._instrument(symbol).instrument
        grid = self._grids.get(symbol)
        if grid is None or grid[0] is not inst:
            grid = self._grids[symbol] = (inst, {})
        return grid

    @staticmethod
    def _to_grid(grid: tuple[Instrument, dict[float, Decimal]], value: float) -> Decimal:
        inst, cache = grid
        if len(cache) >= _GRID_CACHE_SIZE:
            cache.clear()
        price = cache[value] = max(inst.round_price(value), inst.tick_size)
        return price

    def advance_time(self, ts: int) -> None:
        """Move the engine clock forward without a price change."""
        self._advance(ts)

    # ------------------------------------------------------------------ internals
    def _advance(self, ts: int | None) -> None:
        if ts is None:
            return
        if ts < self.now:
            raise ValueError(f"time must not go back: {ts} < {self.now}")
        self.now = ts

    def _capacity(self, symbol: str, volume: Decimal) -> Decimal | None:
        if self.config.participation is None:
            return None
        inst = self._instrument(symbol).instrument
        return inst.round_qty(volume * self.config.participation, Rounding.DOWN)

    def _levels_between(self, symbol: str, a: Decimal, b: Decimal) -> list[Decimal]:
        lo, hi = min(a, b), max(a, b)
        levels: set[Decimal] = set()
        for order in self._open_orders(symbol):
            price = order.stop_price if order.awaiting_trigger else order.limit_price
            if price is not None and lo < price < hi:
                levels.add(price)
        if self.config.liquidation:
            inst = self._instrument(symbol).instrument
            for (_, sym), pos in self._positions.items():
                if sym == symbol and pos.qty != 0:
                    liq = self._liquidation_price(pos)
                    if liq is None:
                        continue
                    rounded = inst.round_price(liq)
                    if lo < rounded < hi:
                        levels.add(rounded)
        return sorted(levels, reverse=b < a)

    def _move(self, symbol: str, last: Decimal, mark: Decimal) -> None:
        self._last[symbol] = last
        self._mark[symbol] = mark
        self._match(symbol)
        self._check_liquidations(symbol)

    def _match(self, symbol: str) -> None:
        """One pass over the symbol's open orders in priority order at the current prices."""
        last, mark = self._last[symbol], self._mark[symbol]
        for snapshot in self._open_orders(symbol):
            order = self._orders.get(snapshot.order_id)
            if order is None or not order.is_open:
                continue
            if order.awaiting_trigger:
                if trigger_fires(order, last, mark):
                    self._trigger(order)
                continue
            limit = order.limit_price
            if limit is None or not limit_marketable(order.side, limit, last):
                continue
            qty = order.remaining
            capacity = self._liquidity.get(symbol)
            if capacity is not None:
                qty = min(qty, capacity)
            if qty <= 0:
                continue
            fill = self._execute(order, qty, limit, "maker")
            if fill is not None and capacity is not None:
                self._liquidity[symbol] = capacity - fill.qty

    def _trigger(self, order: SimOrder) -> None:
        fired = self._store(
            replace(order, triggered=True, updated_ts=self.now, reason=Reason.TRIGGERED)
        )
        self._emit("order_triggered", order.account_id, order.symbol, fired.to_dict)
        last = self._last[order.symbol]
        if fired.limit_price is None or limit_marketable(fired.side, fired.limit_price, last):
            self._take(fired)

    def _take(self, order: SimOrder) -> SimFill | None:
        """Fill the whole remaining quantity as a taker (limit price caps the slipped price)."""
        price = self._taker_price(order.symbol, order.side, order.remaining)
        if order.limit_price is not None:
            if order.side is Side.BUY:
                price = min(price, order.limit_price)
            else:
                price = max(price, order.limit_price)
        return self._execute(order, order.remaining, price, "taker")
