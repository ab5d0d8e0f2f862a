"""State, bookkeeping and execution of the simulated exchange (base of :class:`SimEngine`).

This module owns the engine's mutable state and everything that happens when an order executes:
fees, position and balance updates, the reduce-only invariant, the event log and liquidation.
Order entry lives in :mod:`adapters.sim.engine`, price-driven matching in
:mod:`adapters.sim.matching`.

Reduce-only invariant (checked after every position change of an account and symbol): an open
reduce-only order whose side would not reduce the position (flat, or same side) is cancelled with
reason ``would_not_reduce_position``; one larger than the position is reduced to the position's
size (event ``order_reduced``). Each reduce-only fill is also clipped to the position, so a
reduce-only order can never open, grow or flip a position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from adapters.sim.accounts import (
    ZERO,
    AccountRecord,
    AccountView,
    Position,
    PositionView,
    apply_fill,
    fee_for,
    liquidation_price,
)
from adapters.sim.config import EngineConfig
from adapters.sim.instruments import SimInstrument
from adapters.sim.models import (
    USD,
    Bar,
    CandleBar,
    Event,
    LazyPrices,
    OrderKind,
    OrderState,
    Reason,
    SimFill,
    SimOrder,
    as_bar,
    deterministic_uuid,
)
from domain.models import AccountState, Candle, Instrument, Side
from domain.precision import Rounding

_BPS = Decimal(10_000)
_MILLION = Decimal(1_000_000)
MINUTE_MS = 60_000


class EngineCore:
    """Mutable state plus execution primitives; not used directly (see ``SimEngine``)."""

    def __init__(
        self,
        instruments: dict[str, SimInstrument],
        config: EngineConfig,
        seed: int,
        start_ts: int,
    ) -> None:
        self.config = config
        self.seed = seed
        self.instruments = dict(instruments)
        self.now = start_ts
        start = {s: i.start_price for s, i in instruments.items()}
        self._last = LazyPrices(start, self._grid_price)
        self._mark = LazyPrices(start, self._grid_price)
        self._accounts: dict[str, AccountRecord] = {}
        self._positions: dict[tuple[str, str], Position] = {}
        self._held: dict[str, list[Position]] = {}  # account -> open positions (a cache)
        self._held_any: frozenset[str] | None = None  # symbols with a position (a cache)
        self._orders: dict[str, SimOrder] = {}
        self._open: dict[str, dict[str, None]] = {s: {} for s in instruments}
        self._closed: deque[str] = deque()
        self._fills: list[SimFill] = []
        self._fill_times: list[int] = []  # their times, for bisection (SimEngine.fills)
        self._events: list[Event] = []
        self._event_seq = 0
        self._counters: dict[str, int] = {"order": 0, "fill": 0, "priority": 0, "liq": 0}
        # one-minute bars, newest last: from ticks (Bar) or candles (CandleBar, gridded on read)
        self._bars: dict[str, list[Bar | CandleBar]] = {s: [] for s in instruments}
        self._liquidity: dict[str, Decimal | None] = {}
        # per symbol: its instrument and candle prices already put on its grid
        self._grids: dict[str, tuple[Instrument, dict[float, Decimal]]] = {}
        # the liquidation bound's float terms of positions and orders, by key (matching), and
        # its fee, slippage and impact rates
        self._bound_terms: dict[Any, tuple[Any, tuple[Any, ...]]] = {}
        # bumped by every change of an order, a position or an account (matching's bands of
        # prices ruled liquidation-free hold until it moves)
        self._revision = 0
        self._band: tuple[int, dict[str, tuple[Decimal, Decimal]]] | None = None
        self._rates: tuple[EngineConfig, tuple[float, float, float]] | None = None
        # (account, symbol) -> (position, mark, spec, unrealized PnL, maintenance margin) as
        # last computed for liquidation prices (see _liquidation_price)
        self._liq_terms: dict[
            tuple[str, str], tuple[Position, Decimal, SimInstrument, Decimal, Decimal]
        ] = {}

    # ------------------------------------------------------------------ ids and events
    def _next_id(self, kind: str) -> str:
        self._counters[kind] += 1
        return deterministic_uuid(self.seed, kind, self._counters[kind])

    def _next_priority(self) -> int:
        self._counters["priority"] += 1
        return self._counters["priority"]

    def _emit(
        self,
        kind: str,
        account_id: str | None,
        symbol: str | None,
        data: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> None:
        """Log an event; ``data`` may be a function building it on first read (see Event)."""
        self._event_seq += 1
        self._events.append(Event(self._event_seq, self.now, kind, account_id, symbol, data=data))
        cap = self.config.max_events
        if len(self._events) > cap + cap // 10:
            del self._events[: len(self._events) - cap]

    # ------------------------------------------------------------------ lookups
    def _instrument(self, symbol: str) -> SimInstrument:
        return self.instruments[symbol]

    def _position(self, account_id: str, symbol: str) -> Position:
        return self._positions.get((account_id, symbol)) or Position(account_id, symbol)

    def _leverage(self, account_id: str, symbol: str) -> Decimal:
        record = self._accounts[account_id]
        preferred = (record.leverage or {}).get(symbol, self.config.default_leverage)
        return min(preferred, self._instrument(symbol).instrument.max_leverage)

    def _open_orders(self, symbol: str) -> list[SimOrder]:
        return [self._orders[oid] for oid in self._open.get(symbol, {})]

    def _account_open_orders(self, account_id: str, symbol: str | None = None) -> list[SimOrder]:
        """The account's open orders (of one symbol, or of all in symbol order), by priority."""
        orders = self._orders
        books = [self._open.get(symbol, {})] if symbol is not None else self._open.values()
        return [
            order
            for book in books
            if book
            for oid in book
            if (order := orders[oid]).account_id == account_id
        ]

    def _store(self, order: SimOrder) -> SimOrder:
        """Save the new version of an order and keep the open index and retention in step."""
        self._revision += 1
        self._orders[order.order_id] = order
        book = self._open[order.symbol]
        if order.is_open:
            book.setdefault(order.order_id, None)
        elif order.order_id in book:
            del book[order.order_id]
            self._closed.append(order.order_id)
            while len(self._closed) > self.config.max_closed_orders:
                self._orders.pop(self._closed.popleft(), None)
        return order

    # ------------------------------------------------------------------ margin
    def _order_reference_price(self, order: SimOrder) -> Decimal:
        if order.limit_price is not None:
            return order.limit_price
        if order.stop_price is not None:
            return order.stop_price
        return self._last[order.symbol]

    def _margin(self, account_id: str, symbol: str, size: Decimal, price: Decimal) -> Decimal:
        contract = self._instrument(symbol).instrument.contract_size
        return abs(size) * contract * price / self._leverage(account_id, symbol)

    def _order_margin(self, account_id: str) -> Decimal:
        total = ZERO
        for order in self._account_open_orders(account_id):
            if not order.reduce_only:
                price = self._order_reference_price(order)
                total += self._margin(account_id, order.symbol, order.remaining, price)
        return total

    def _account_positions(self, account_id: str) -> list[Position]:
        """The account's open positions, in the order of ``_positions`` (remembered until a
        position changes: :meth:`_set_position`)."""
        held = self._held.get(account_id)
        if held is None:
            held = self._held[account_id] = [
                p for (a, _), p in self._positions.items() if a == account_id and p.qty != 0
            ]
        return held

    def _held_symbols(self) -> frozenset[str]:
        """Symbols any account holds a position in (remembered like the positions)."""
        held = self._held_any
        if held is None:
            held = self._held_any = frozenset(s for (_, s), p in self._positions.items() if p.qty)
        return held

    def _clear_positions(self) -> None:
        """Forget every position (a restored engine's, before it is given its own)."""
        self._revision += 1
        self._positions = {}
        self._held.clear()
        self._held_any = None

    def _set_position(self, key: tuple[str, str], position: Position) -> None:
        self._revision += 1
        self._positions[key] = position
        self._held.clear()
        self._held_any = None

    def _grid_ohlc(self, candle: Candle) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """A candle's prices on the grid (matching's)."""
        raise NotImplementedError

    def _grid_price(self, symbol: str, value: float) -> Decimal:
        """A price on the symbol's tick grid, at least one tick (overridden by matching)."""
        inst = self._instrument(symbol).instrument
        return max(inst.round_price(value), inst.tick_size)

    def _exposure(self, account_id: str) -> tuple[Decimal, Decimal, Decimal]:
        """Unrealized PnL, initial and maintenance margin of the account's positions."""
        unrealized = initial = maintenance = ZERO
        for pos in self._account_positions(account_id):
            spec = self._instrument(pos.symbol)
            mark = self._mark[pos.symbol]
            contract = spec.instrument.contract_size
            unrealized += pos.unrealized(mark, contract)
            initial += self._margin(account_id, pos.symbol, pos.qty, mark)
            maintenance += abs(pos.qty) * contract * mark * spec.maintenance_margin_rate
        return unrealized, initial, maintenance

    def _available_margin(self, account_id: str) -> Decimal:
        """What :meth:`account` gives as ``available_margin``, without the rest of the view."""
        unrealized, initial, _ = self._exposure(account_id)
        equity = self._accounts[account_id].balance + unrealized
        return equity - initial - self._order_margin(account_id)

    def account_state(self, account_id: str) -> AccountState:
        """``account(account_id).to_account_state()``, without the rest of the view."""
        balance = self._accounts[account_id].balance
        unrealized, initial, _ = self._exposure(account_id)
        equity = balance + unrealized
        order_margin = self._order_margin(account_id)
        return AccountState(
            currency=USD,
            equity=equity,
            available_margin=equity - initial - order_margin,
            used_margin=initial + order_margin,
            unrealized_pnl=unrealized,
            ts=self.now,
            balances={USD: balance},
        )

    def account(self, account_id: str) -> AccountView:
        """Balance, equity and margin of an account (model in :mod:`adapters.sim.accounts`)."""
        record = self._accounts[account_id]
        unrealized, initial, maintenance = self._exposure(account_id)
        equity = record.balance + unrealized
        order_margin = self._order_margin(account_id)
        return AccountView(
            account_id=account_id,
            currency=USD,
            balance=record.balance,
            unrealized_pnl=unrealized,
            equity=equity,
            initial_margin=initial,
            order_margin=order_margin,
            maintenance_margin=maintenance,
            available_margin=equity - initial - order_margin,
            realized_pnl=record.realized_pnl,
            fees_paid=record.fees_paid,
            ts=self.now,
        )

    def _liquidation_price(self, pos: Position) -> Decimal | None:
        other = self._accounts[pos.account_id].balance
        terms = self._liq_terms
        for p in self._account_positions(pos.account_id):
            if p.symbol == pos.symbol:
                continue
            mark = self._mark[p.symbol]
            spec = self._instrument(p.symbol)
            # positions, marks and specs are immutable (a change replaces the object), so the
            # same three objects give the same terms
            cached = terms.get((p.account_id, p.symbol))
            if cached is not None and cached[0] is p and cached[1] is mark and cached[2] is spec:
                unrealized, maintenance = cached[3], cached[4]
            else:
                contract = spec.instrument.contract_size
                unrealized = p.unrealized(mark, contract)
                maintenance = abs(p.qty) * contract * mark * spec.maintenance_margin_rate
                terms[p.account_id, p.symbol] = (p, mark, spec, unrealized, maintenance)
            other += unrealized
            other -= maintenance
        spec = self._instrument(pos.symbol)
        return liquidation_price(
            pos.qty,
            pos.entry_price,
            spec.instrument.contract_size,
            spec.maintenance_margin_rate,
            other,
        )

    def _rounded_liquidation_price(self, pos: Position) -> Decimal | None:
        price = self._liquidation_price(pos)
        if price is None:
            return None
        return max(self._instrument(pos.symbol).instrument.round_price(price), ZERO)

    def _position_view(self, pos: Position) -> PositionView:
        spec = self._instrument(pos.symbol)
        mark = self._mark[pos.symbol]
        contract = spec.instrument.contract_size
        return PositionView(
            account_id=pos.account_id,
            symbol=pos.symbol,
            qty=pos.qty,
            entry_price=pos.entry_price,
            mark_price=mark,
            unrealized_pnl=pos.unrealized(mark, contract),
            realized_pnl=pos.realized_pnl,
            leverage=self._leverage(pos.account_id, pos.symbol),
            initial_margin=self._margin(pos.account_id, pos.symbol, pos.qty, mark),
            maintenance_margin=abs(pos.qty) * contract * mark * spec.maintenance_margin_rate,
            liquidation_price=self._rounded_liquidation_price(pos),
            opened_ts=pos.opened_ts,
            updated_ts=pos.updated_ts,
        )

    # ------------------------------------------------------------------ pricing
    def _taker_price(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        """Last price moved against the taker by the slippage model, on the tick grid."""
        inst = self._instrument(symbol).instrument
        last = self._last[symbol]
        notional = qty * inst.contract_size * last
        bps = self.config.slippage_bps + self.config.impact_bps_per_million * notional / _MILLION
        if side is Side.BUY:
            return inst.round_price(last * (1 + bps / _BPS), rounding=Rounding.UP)
        price = inst.round_price(last * (1 - bps / _BPS), rounding=Rounding.DOWN)
        return max(price, inst.tick_size)

    # ------------------------------------------------------------------ execution
    def _reducible(self, order: SimOrder) -> Decimal:
        """How much of a reduce-only order may execute now (0 when it would not reduce)."""
        pos = self._position(order.account_id, order.symbol).qty
        reduces = (pos > 0 and order.side is Side.SELL) or (pos < 0 and order.side is Side.BUY)
        return min(order.remaining, abs(pos)) if reduces else ZERO

    def _execute(
        self, order: SimOrder, qty: Decimal, price: Decimal, fill_type: str
    ) -> SimFill | None:
        """Fill ``qty`` of ``order`` at ``price``; updates position, balance, order and events."""
        if order.reduce_only:
            qty = min(qty, self._reducible(order))
        if qty <= 0:
            if order.reduce_only:
                self._cancel(order, Reason.WOULD_NOT_REDUCE)
            return None
        spec = self._instrument(order.symbol)
        contract = spec.instrument.contract_size
        maker = fill_type == "maker"
        rate = self.config.maker_fee if maker else self.config.taker_fee
        fee = fee_for(qty, price, contract, rate)
        key = (order.account_id, order.symbol)
        position, realized = apply_fill(
            self._position(*key),
            order.side,
            qty,
            price,
            contract_size=contract,
            ts=self.now,
            entry_quantum=spec.instrument.tick_size.scaleb(-8),
        )
        self._set_position(key, position)
        record = self._accounts[order.account_id]
        record.balance += realized - fee
        record.realized_pnl += realized
        record.fees_paid += fee

        updated = self._store(order.executed(qty, price, self.now))
        self._counters["fill"] += 1
        fill = SimFill(
            fill_id=deterministic_uuid(self.seed, "fill", self._counters["fill"]),
            order_id=order.order_id,
            cli_ord_id=order.cli_ord_id,
            account_id=order.account_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            fee_currency=USD,
            maker=maker,
            fill_type=fill_type,
            order_kind=order.kind.value,
            remaining_order_qty=updated.remaining,
            realized_pnl=realized,
            ts=self.now,
            seq=self._counters["fill"],
        )
        self._fills.append(fill)
        self._emit("fill", order.account_id, order.symbol, fill.to_dict)
        self._emit("order_updated", order.account_id, order.symbol, updated.to_dict)
        self._emit("position", order.account_id, order.symbol, position.to_dict)
        self._enforce_reduce_only(order.account_id, order.symbol)
        return fill

    def _cancel(self, order: SimOrder, reason: str) -> SimOrder:
        cancelled = self._store(order.cancelled(self.now, reason))
        self._emit("order_cancelled", order.account_id, order.symbol, cancelled.to_dict)
        return cancelled

    def _enforce_reduce_only(self, account_id: str, symbol: str) -> None:
        """Cancel or shrink open reduce-only orders so none can exceed the position."""
        for order in self._account_open_orders(account_id, symbol):
            if not order.reduce_only:
                continue
            allowed = self._reducible(order)
            if allowed <= 0:
                self._cancel(order, Reason.WOULD_NOT_REDUCE)
            elif allowed < order.remaining:
                reduced = self._store(
                    replace(
                        order,
                        qty=order.filled + allowed,
                        updated_ts=self.now,
                        reason=Reason.REDUCED,
                    )
                )
                self._emit("order_reduced", account_id, symbol, reduced.to_dict)

    # ------------------------------------------------------------------ liquidation
    def _check_liquidations(self, symbol: str) -> None:
        if not self.config.liquidation:
            return
        mark = self._mark[symbol]
        for (account_id, sym), pos in list(self._positions.items()):
            if sym != symbol or pos.qty == 0:
                continue
            price = self._liquidation_price(pos)
            if price is None:
                continue
            if (pos.qty > 0 and mark <= price) or (pos.qty < 0 and mark >= price):
                self._liquidate(account_id, pos)

    def _liquidate(self, account_id: str, pos: Position) -> None:
        """Cancel the account's orders on the symbol and close the position at the mark."""
        for order in self._account_open_orders(account_id, pos.symbol):
            self._cancel(order, Reason.LIQUIDATION)
        inst = self._instrument(pos.symbol).instrument
        price = max(inst.round_price(self._mark[pos.symbol]), inst.tick_size)
        order = self._store(
            SimOrder(
                order_id=self._next_id("liq"),
                account_id=account_id,
                symbol=pos.symbol,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                kind=OrderKind.MARKET,
                qty=abs(pos.qty),
                filled=ZERO,
                limit_price=None,
                stop_price=None,
                trigger_signal=None,
                reduce_only=True,
                cli_ord_id=None,
                state=OrderState.UNTOUCHED,
                triggered=False,
                priority=self._next_priority(),
                created_ts=self.now,
                updated_ts=self.now,
                reason=Reason.LIQUIDATION,
            )
        )
        self._emit(
            "liquidation", account_id, pos.symbol, {"order_id": order.order_id, "price": str(price)}
        )
        self._execute(order, order.qty, price, "liquidation")

    # ------------------------------------------------------------------ bars
    def _record_tick_bar(self, symbol: str, price: Decimal, volume: Decimal) -> None:
        bars = self._bars[symbol]
        bucket = self.now - self.now % MINUTE_MS
        if bars and bars[-1].open_time == bucket:
            bar = as_bar(bars[-1])
            bars[-1] = replace(
                bar,
                high=max(bar.high, price),
                low=min(bar.low, price),
                close=price,
                volume=bar.volume + volume,
            )
        elif not bars or bars[-1].open_time < bucket:
            self._append_bar(symbol, Bar(bucket, price, price, price, price, volume))

    def _append_bar(self, symbol: str, bar: Bar | CandleBar) -> None:
        bars = self._bars[symbol]
        if bars and bars[-1].open_time == bar.open_time:
            bars[-1] = bar
        else:
            bars.append(bar)
        cap = self.config.max_bars
        if len(bars) > cap + cap // 10:
            del bars[: len(bars) - cap]
