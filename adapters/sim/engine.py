"""The simulated Kraken Futures matching engine: order entry, queries, faults and snapshots.

Pure and deterministic: no wall clock, threads or I/O. Time moves only through ``set_price``,
``on_candle`` and ``advance_time``; ids come from the seed and counters. The loopback server maps
the venue's endpoints onto the public methods here (``sendorder`` -> :meth:`SimEngine.send_order`,
``openorders`` -> :meth:`SimEngine.open_orders`, ``fills`` -> :meth:`SimEngine.fills`, ...) and
publishes :meth:`SimEngine.events_since` on the WebSocket feeds.

Order entry decisions (statuses are the venue's, API-FACTS.md 2b):

- Checks run in this order: account and symbol, order type, side, size (positive, on the lot
  grid, at least the minimum: ``invalidSize``), prices (required, positive, on the tick grid:
  ``invalidPrice``), client order id (length: ``clientOrderIdTooLong``; already used by an open
  order of the account: ``clientOrderIdAlreadyExist``), immediate trigger, reduce-only, post-only,
  IOC, maximum position, margin.
- A stop or take-profit whose trigger condition already holds at placement (or after an edit) is
  rejected with ``invalidPrice``. API-FACTS.md lists no dedicated status for this case;
  ``invalidPrice`` is the venue's price-rejection status and ccxt maps it to ``InvalidOrder``.
- Reduce-only: an order that would not reduce the position (flat, or same side) is rejected with
  ``wouldNotReducePosition``. One larger than the position is **accepted with its quantity
  reduced** to the position size and the reduction reported in ``SendResult.reduced_quantity``
  (the venue's ``reducedQuantity`` field of the PLACE event). Resting reduce-only orders follow
  the position: see :mod:`adapters.sim.core`.
- Post-only (``post``) that would take: ``postWouldExecute``. IOC that cannot execute at once:
  ``iocWouldNotExecute``; an IOC never rests.
- Margin (model in :mod:`adapters.sim.accounts`): an order that executes at once needs the
  increase of initial margin it causes plus the taker fee; a resting order that is not
  reduce-only needs its own margin reservation. Short of that: ``insufficientAvailableFunds``.
  Fills of resting and triggered orders are not re-checked (their margin was reserved).
- Resulting position above the instrument's ``maxPositionSize``: ``maxPositionViolation``.
- An edit's ``size`` is the new **open** quantity (the venue's default, relative mode).
- Rejections get no order id; they are logged as ``order_rejected`` events.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from adapters.sim.accounts import ZERO, AccountRecord, PositionView, fee_for
from adapters.sim.config import EngineConfig
from adapters.sim.core import MINUTE_MS
from adapters.sim.instruments import SimInstrument, default_instruments
from adapters.sim.matching import MatchingCore, limit_marketable, trigger_fires
from adapters.sim.models import (
    Bar,
    CancelResult,
    EditResult,
    Event,
    OrderKind,
    OrderState,
    Reason,
    SendResult,
    SimFill,
    SimOrder,
    Status,
    Ticker,
    TriggerSignal,
    as_bar,
)
from adapters.sim.snapshot import restore_state, snapshot_state
from domain.errors import PrecisionError
from domain.models import PositionSide, PositionSnapshot, Side
from domain.precision import Number, is_multiple, to_decimal

_LIMIT_KINDS = frozenset({OrderKind.LIMIT, OrderKind.POST, OrderKind.IOC})


class SimEngine(MatchingCore):
    """Deterministic matching engine of the simulated venue (decisions in the module docstring)."""

    def __init__(
        self,
        instruments: Mapping[str, SimInstrument] | None = None,
        config: EngineConfig | None = None,
        seed: int = 0,
        start_ts: int = 0,
    ) -> None:
        specs = dict(instruments) if instruments is not None else default_instruments()
        super().__init__(specs, config or EngineConfig(), seed, start_ts)

    # ------------------------------------------------------------------ accounts
    def create_account(self, account_id: str, balance: Number) -> None:
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} exists")
        self._revision += 1
        self._accounts[account_id] = AccountRecord(account_id, to_decimal(balance), leverage={})
        self._emit("account_created", account_id, None, {"balance": str(to_decimal(balance))})

    def deposit(self, account_id: str, amount: Number) -> None:
        """Add (or with a negative amount, withdraw) USD collateral."""
        self._revision += 1
        self._accounts[account_id].balance += to_decimal(amount)
        self._emit("deposit", account_id, None, {"amount": str(to_decimal(amount))})

    def set_leverage(self, account_id: str, symbol: str, leverage: Number) -> Decimal:
        """Set the leverage preference; must lie in [1, the instrument's maximum]."""
        value = to_decimal(leverage)
        maximum = self._instrument(symbol).instrument.max_leverage
        if not 1 <= value <= maximum:
            raise ValueError(f"{symbol}: leverage {value} outside [1, {maximum}]")
        record = self._accounts[account_id]
        record.leverage = {**(record.leverage or {}), symbol: value}
        self._emit("leverage_set", account_id, symbol, {"leverage": str(value)})
        return value

    def leverage(self, account_id: str, symbol: str) -> Decimal:
        return self._leverage(account_id, symbol)

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    # ------------------------------------------------------------------ orders
    def send_order(
        self,
        account_id: str,
        symbol: str,
        side: str | Side,
        order_type: str | OrderKind,
        size: Number,
        *,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        trigger_signal: str | TriggerSignal = TriggerSignal.LAST,
        reduce_only: bool = False,
        cli_ord_id: str | None = None,
    ) -> SendResult:
        """Place an order; ``status`` is ``placed`` or the venue's rejection status."""
        request = {
            "symbol": symbol,
            "side": str(side),
            "orderType": str(order_type),
            "size": str(size),
            "cliOrdId": cli_ord_id,
        }
        if account_id not in self._accounts:
            return self._reject(Status.INVALID_ACCOUNT, account_id, request)
        if symbol not in self.instruments:
            return self._reject(Status.CONTRACT_NOT_FOUND, account_id, request)
        try:
            kind = order_type if type(order_type) is OrderKind else OrderKind(order_type)
        except ValueError:
            return self._reject(Status.INVALID_ORDER_TYPE, account_id, request)
        try:
            side_ = side if type(side) is Side else Side(side)
        except ValueError:
            return self._reject(Status.INVALID_SIDE, account_id, request)
        try:
            signal = (
                trigger_signal
                if type(trigger_signal) is TriggerSignal
                else TriggerSignal(trigger_signal)
            )
        except ValueError:
            return self._reject(Status.INVALID_ARGUMENT, account_id, request)
        qty = self._valid_qty(symbol, size)
        if qty is None:
            return self._reject(Status.INVALID_SIZE, account_id, request)
        needs_limit = kind in _LIMIT_KINDS
        limit = self._valid_price(symbol, limit_price) if kind is not OrderKind.MARKET else None
        stop = self._valid_price(symbol, stop_price) if kind.is_trigger else None
        if (needs_limit and limit is None) or (kind.is_trigger and stop is None):
            return self._reject(Status.INVALID_PRICE, account_id, request)
        if limit_price is not None and kind is not OrderKind.MARKET and limit is None:
            return self._reject(Status.INVALID_PRICE, account_id, request)
        if cli_ord_id is not None:
            if len(cli_ord_id) > self.config.max_cli_ord_id_length:
                return self._reject(Status.CLI_ORD_ID_TOO_LONG, account_id, request)
            if any(o.cli_ord_id == cli_ord_id for o in self._account_open_orders(account_id)):
                return self._reject(Status.DUPLICATE_CLI_ORD_ID, account_id, request)
        order = SimOrder(
            order_id="",
            account_id=account_id,
            symbol=symbol,
            side=side_,
            kind=kind,
            qty=qty,
            filled=ZERO,
            limit_price=limit,
            stop_price=stop,
            trigger_signal=signal if kind.is_trigger else None,
            reduce_only=reduce_only,
            cli_ord_id=cli_ord_id,
            state=OrderState.UNTOUCHED,
            triggered=False,
            priority=0,
            created_ts=self.now,
            updated_ts=self.now,
        )
        last = self._last[symbol]
        if kind.is_trigger and trigger_fires(order, last, self._mark[symbol]):
            return self._reject(Status.INVALID_PRICE, account_id, request)
        reduced: Decimal | None = None
        if reduce_only:
            allowed = self._reducible(order)
            if allowed <= 0:
                return self._reject(Status.WOULD_NOT_REDUCE, account_id, request)
            if allowed < qty:
                reduced = qty - allowed
                order = replace(order, qty=allowed)
        immediate = kind is OrderKind.MARKET or (
            limit is not None and not kind.is_trigger and limit_marketable(side_, limit, last)
        )
        if kind is OrderKind.POST and immediate:
            return self._reject(Status.POST_WOULD_EXECUTE, account_id, request)
        if kind is OrderKind.IOC and not immediate:
            return self._reject(Status.IOC_WOULD_NOT_EXECUTE, account_id, request)
        status = self._check_risk(order, immediate)
        if status is not None:
            return self._reject(status, account_id, request)
        return self._accept(order, immediate, reduced)

    def cancel_order(
        self, account_id: str, order_id: str | None = None, cli_ord_id: str | None = None
    ) -> CancelResult:
        """Cancel an open order by venue or client id: ``cancelled``, ``filled`` or ``notFound``."""
        order = self._find(account_id, order_id, cli_ord_id)
        if order is None or order.state is OrderState.CANCELLED:
            return CancelResult(Status.NOT_FOUND, order, self.now)
        if order.state is OrderState.FILLED:
            return CancelResult(Status.FILLED, order, self.now)
        return CancelResult(
            Status.CANCELLED, self._cancel(order, Reason.CANCELLED_BY_USER), self.now
        )

    def cancel_all(self, account_id: str, symbol: str | None = None) -> list[SimOrder]:
        """Cancel every open order of the account (optionally one symbol); returns them."""
        return [
            self._cancel(o, Reason.CANCELLED_BY_USER)
            for o in self._account_open_orders(account_id, symbol)
        ]

    def edit_order(
        self,
        account_id: str,
        order_id: str | None = None,
        *,
        cli_ord_id: str | None = None,
        size: Number | None = None,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
    ) -> EditResult:
        """Change an open order's open size, limit price or trigger price (module docstring)."""
        old = self._find(account_id, order_id, cli_ord_id)
        if old is None or not old.is_open:
            return EditResult(Status.EDIT_NOT_FOUND, old, old, (), self.now)
        new = old
        if size is not None:
            qty = self._valid_qty(old.symbol, size)
            if qty is None:
                return EditResult(Status.INVALID_SIZE, old, old, (), self.now)
            new = replace(new, qty=old.filled + qty)
        if limit_price is not None:
            price = self._valid_price(old.symbol, limit_price)
            if price is None or old.limit_price is None:
                return EditResult(Status.INVALID_PRICE, old, old, (), self.now)
            new = replace(new, limit_price=price)
        if stop_price is not None:
            if not old.awaiting_trigger:
                return EditResult(Status.EDIT_NOT_A_STOP, old, old, (), self.now)
            price = self._valid_price(old.symbol, stop_price)
            if price is None:
                return EditResult(Status.INVALID_PRICE, old, old, (), self.now)
            new = replace(new, stop_price=price)
        last = self._last[old.symbol]
        if new.awaiting_trigger and trigger_fires(new, last, self._mark[old.symbol]):
            return EditResult(Status.INVALID_PRICE, old, old, (), self.now)
        if new.reduce_only:
            allowed = self._reducible(new)
            if allowed <= 0:
                return EditResult(Status.WOULD_NOT_REDUCE, old, old, (), self.now)
            new = replace(new, qty=new.filled + min(new.remaining, allowed))
        immediate = (
            not new.awaiting_trigger
            and new.limit_price is not None
            and limit_marketable(new.side, new.limit_price, last)
        )
        if new.kind is OrderKind.POST and immediate:
            return EditResult(Status.POST_WOULD_EXECUTE, old, old, (), self.now)
        status = self._check_risk(new, immediate, replacing=old)
        if status is not None:
            return EditResult(status, old, old, (), self.now)
        new = self._store(replace(new, updated_ts=self.now, reason=Reason.EDITED))
        self._emit("order_edited", account_id, new.symbol, {"old": old.to_dict(), **new.to_dict()})
        fills: tuple[SimFill, ...] = ()
        if immediate:
            fill = self._take(new)
            fills = (fill,) if fill is not None else ()
        return EditResult(Status.EDITED, self._orders.get(new.order_id), old, fills, self.now)

    def venue_cancel(
        self, order_id: str, reason: str = Reason.CANCELLED_BY_ADMIN
    ) -> SimOrder | None:
        """Fault hook: the venue cancels an open order on its own; ``None`` if not open."""
        order = self._orders.get(order_id)
        if order is None or not order.is_open:
            return None
        return self._cancel(order, reason)

    # ------------------------------------------------------------------ queries
    def get_order(self, order_id: str) -> SimOrder | None:
        """An open or recently closed order (retention: ``config.max_closed_orders``)."""
        return self._orders.get(order_id)

    def orders_by_cli_ord_id(self, account_id: str, cli_ord_id: str) -> list[SimOrder]:
        """The account's retained orders (open or recently closed) with this client id, oldest
        first; a client id is unique only among open orders, so several may match."""
        return [
            o
            for o in self._orders.values()
            if o.account_id == account_id and o.cli_ord_id == cli_ord_id
        ]

    def open_orders(self, account_id: str, symbol: str | None = None) -> list[SimOrder]:
        """Resting and untriggered trigger orders, in priority order per symbol."""
        return self._account_open_orders(account_id, symbol)

    def position(self, account_id: str, symbol: str) -> PositionView | None:
        pos = self._positions.get((account_id, symbol))
        return None if pos is None or pos.qty == 0 else self._position_view(pos)

    def positions(self, account_id: str) -> list[PositionView]:
        return [self._position_view(p) for p in self._account_positions(account_id)]

    def position_snapshots(
        self, account_id: str, symbols: Mapping[str, str] | None = None
    ) -> list[PositionSnapshot]:
        """``[view.to_snapshot() for view in positions(account_id)]`` without the margins the
        snapshot leaves out; ``symbols`` renames venue ids (the in-process port's unified)."""
        out = []
        for pos in self._account_positions(account_id):
            mark = self._mark[pos.symbol]
            contract = self._instrument(pos.symbol).instrument.contract_size
            out.append(
                PositionSnapshot(
                    symbol=symbols[pos.symbol] if symbols is not None else pos.symbol,
                    side=PositionSide.LONG if pos.qty > 0 else PositionSide.SHORT,
                    qty=abs(pos.qty),
                    entry_price=pos.entry_price,
                    mark_price=mark,
                    unrealized_pnl=pos.unrealized(mark, contract),
                    liquidation_price=self._rounded_liquidation_price(pos),
                    leverage=self._leverage(pos.account_id, pos.symbol),
                )
            )
        return out

    def fills(
        self, account_id: str | None = None, since_seq: int = 0, since_ts: int | None = None
    ) -> list[SimFill]:
        """Fills with ``seq > since_seq`` and, when given, ``ts >= since_ts`` (all accounts when
        ``account_id`` is None). Fills are kept in time order, so ``since_ts`` is a bisection."""
        start = since_seq
        fills = self._fills
        if since_ts is not None:
            times = self._fill_times  # the fills' times, kept up with the append-only list
            if len(times) != len(fills):
                del times[len(fills) :]
                times.extend(f.ts for f in fills[len(times) :])
            start = max(start, bisect.bisect_left(times, since_ts))
        return [f for f in fills[start:] if account_id is None or f.account_id == account_id]

    def last_price(self, symbol: str) -> Decimal:
        return self._last[symbol]

    def mark_price(self, symbol: str) -> Decimal:
        return self._mark[symbol]

    def ohlcv(self, symbol: str, since: int | None = None, until: int | None = None) -> list[Bar]:
        """One-minute bars kept by the engine (from candles and ticks), oldest first."""
        return [
            as_bar(b)
            for b in self._bars[symbol]
            if (since is None or b.open_time >= since) and (until is None or b.open_time <= until)
        ]

    def ticker(self, symbol: str) -> Ticker:
        """Last, mark, a one-tick spread around the last price and 24 h stats from the bars."""
        last, tick = self._last[symbol], self._instrument(symbol).instrument.tick_size
        day = self.ohlcv(symbol, since=self.now - 24 * 60 * MINUTE_MS)
        return Ticker(
            symbol=symbol,
            last=last,
            mark=self._mark[symbol],
            index=self._mark[symbol],
            bid=max(last - tick, tick),
            ask=last + tick,
            open24h=day[0].open if day else last,
            high24h=max([b.high for b in day] + [last]),
            low24h=min([b.low for b in day] + [last]),
            vol24h=sum((b.volume for b in day), ZERO),
            ts=self.now,
        )

    def tickers(self) -> list[Ticker]:
        return [self.ticker(symbol) for symbol in self.instruments]

    def events_since(self, seq: int = 0, account_id: str | None = None) -> list[Event]:
        """Events with ``seq`` greater than ``seq``, oldest first (optionally one account's)."""
        if not self._events:
            return []
        start = max(0, seq - self._events[0].seq + 1)
        events = self._events[start:]
        return [e for e in events if account_id is None or e.account_id in (None, account_id)]

    @property
    def last_event_seq(self) -> int:
        return self._event_seq

    # ------------------------------------------------------------------ snapshots
    def to_state(self) -> dict[str, Any]:
        """The whole engine as JSON-ready data (``Decimal`` as strings)."""
        return snapshot_state(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SimEngine:
        """Rebuild an engine from :meth:`to_state`; it behaves exactly as the original would."""
        return restore_state(cls, state)

    # ------------------------------------------------------------------ internals
    def _valid_qty(self, symbol: str, size: Number) -> Decimal | None:
        inst = self._instrument(symbol).instrument
        try:
            qty = to_decimal(size)
        except (PrecisionError, ArithmeticError, ValueError, TypeError):
            return None
        if qty < inst.min_size or not is_multiple(qty, inst.lot_size):
            return None
        return qty

    def _valid_price(self, symbol: str, price: Number | None) -> Decimal | None:
        if price is None:
            return None
        inst = self._instrument(symbol).instrument
        try:
            value = to_decimal(price)
        except (PrecisionError, ArithmeticError, ValueError, TypeError):
            return None
        if value <= 0 or not is_multiple(value, inst.tick_size):
            return None
        return value

    def _find(
        self, account_id: str, order_id: str | None, cli_ord_id: str | None
    ) -> SimOrder | None:
        if order_id is not None:
            order = self._orders.get(order_id)
            return order if order is not None and order.account_id == account_id else None
        if cli_ord_id is None:
            return None
        matches = [
            o
            for o in self._orders.values()
            if o.account_id == account_id and o.cli_ord_id == cli_ord_id
        ]
        open_matches = [o for o in matches if o.is_open]
        if open_matches:
            return open_matches[-1]
        return matches[-1] if matches else None

    def _check_risk(
        self, order: SimOrder, immediate: bool, replacing: SimOrder | None = None
    ) -> str | None:
        """``maxPositionViolation`` / ``insufficientAvailableFunds`` or ``None`` when fine."""
        spec = self._instrument(order.symbol)
        pos = self._position(order.account_id, order.symbol).qty
        signed = order.remaining if order.side is Side.BUY else -order.remaining
        if not order.reduce_only and abs(pos + signed) > spec.max_position_size:
            return Status.MAX_POSITION
        available = self._available_margin(order.account_id)
        if replacing is not None and not replacing.reduce_only:
            available += self._margin(
                order.account_id,
                order.symbol,
                replacing.remaining,
                self._order_reference_price(replacing),
            )
        if immediate:
            price = self._taker_price(order.symbol, order.side, order.remaining)
            mark = self._mark[order.symbol]
            before = self._margin(order.account_id, order.symbol, pos, mark)
            after = self._margin(order.account_id, order.symbol, pos + signed, mark)
            contract = spec.instrument.contract_size
            fee = fee_for(order.remaining, price, contract, self.config.taker_fee)
            # Reducing exposure is never blocked, even on an account under water.
            required = ZERO if after <= before else after - before + fee
        elif order.reduce_only:
            required = ZERO
        else:
            price = self._order_reference_price(order)
            required = self._margin(order.account_id, order.symbol, order.remaining, price)
        if required > 0 and required > available:
            return Status.INSUFFICIENT_FUNDS
        return None

    def _reject(self, status: str, account_id: str, request: dict[str, Any]) -> SendResult:
        self._emit(
            "order_rejected", account_id, request.get("symbol"), {"status": status, **request}
        )
        return SendResult(status, None, (), None, self.now)

    def _accept(self, order: SimOrder, immediate: bool, reduced: Decimal | None) -> SendResult:
        order = self._store(order.accepted(self._next_id("order"), self._next_priority()))
        reduced_quantity = None if reduced is None else str(reduced)
        self._emit(
            "order_accepted",
            order.account_id,
            order.symbol,
            lambda: {**order.to_dict(), "reduced_quantity": reduced_quantity},
        )
        fills: tuple[SimFill, ...] = ()
        if immediate:
            fill = self._take(order)
            fills = (fill,) if fill is not None else ()
        current = self._orders.get(order.order_id, order)
        return SendResult(Status.PLACED, current, fills, reduced, self.now)
