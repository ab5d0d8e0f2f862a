"""Value types of the simulated exchange: orders, fills, positions, events and results.

Every type is a frozen dataclass; the engine replaces an object when it changes, so whatever it
hands out can be kept by the caller without aliasing the engine's state. ``to_dict`` gives a
JSON-ready form (``Decimal`` as string) used by snapshots and the event log, ``from_dict`` reads
it back. Status strings are the venue's (API-FACTS.md section 2b and 4.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.models import Candle, Fill, Side
from domain.precision import to_decimal
from domain.values import fast_init

USD = "USD"


class OrderKind(StrEnum):
    """The venue's ``orderType`` values the engine accepts."""

    MARKET = "mkt"
    LIMIT = "lmt"
    POST = "post"  # limit, post-only
    IOC = "ioc"  # limit, immediate-or-cancel
    STOP = "stp"
    TAKE_PROFIT = "take_profit"

    @property
    def is_trigger(self) -> bool:
        return self in _TRIGGER_KINDS


_TRIGGER_KINDS = frozenset({OrderKind.STOP, OrderKind.TAKE_PROFIT})


class TriggerSignal(StrEnum):
    LAST = "last"
    MARK = "mark"


class OrderState(StrEnum):
    """Order status as the venue's open-orders list spells it, plus the two final ones."""

    UNTOUCHED = "untouched"
    PARTIALLY_FILLED = "partiallyFilled"
    FILLED = "filled"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATES


_OPEN_STATES = frozenset({OrderState.UNTOUCHED, OrderState.PARTIALLY_FILLED})


class Status:
    """``sendStatus`` / ``editStatus`` / ``cancelStatus`` values (API-FACTS.md 2b)."""

    PLACED = "placed"
    EDITED = "edited"
    CANCELLED = "cancelled"
    FILLED = "filled"
    NOT_FOUND = "notFound"
    NO_ORDERS_TO_CANCEL = "noOrdersToCancel"
    EDIT_NOT_FOUND = "orderForEditNotFound"
    EDIT_NOT_A_STOP = "orderForEditNotAStop"
    INVALID_ORDER_TYPE = "invalidOrderType"
    INVALID_SIDE = "invalidSide"
    INVALID_SIZE = "invalidSize"
    INVALID_PRICE = "invalidPrice"
    INSUFFICIENT_FUNDS = "insufficientAvailableFunds"
    WOULD_NOT_REDUCE = "wouldNotReducePosition"
    MAX_POSITION = "maxPositionViolation"
    CLI_ORD_ID_TOO_LONG = "clientOrderIdTooLong"
    DUPLICATE_CLI_ORD_ID = "clientOrderIdAlreadyExist"
    POST_WOULD_EXECUTE = "postWouldExecute"
    IOC_WOULD_NOT_EXECUTE = "iocWouldNotExecute"
    # Envelope-level errors (the server puts these in ``error``, not in a status field).
    CONTRACT_NOT_FOUND = "contractNotFound"
    INVALID_ARGUMENT = "invalidArgument"
    INVALID_ACCOUNT = "invalidAccount"


class Reason:
    """Update reasons of the ``open_orders`` feed (API-FACTS.md 4.3)."""

    NEW = "new_placed_order_by_user"
    EDITED = "edited_by_user"
    PARTIAL_FILL = "partial_fill"
    FULL_FILL = "full_fill"
    CANCELLED_BY_USER = "cancelled_by_user"
    CANCELLED_BY_ADMIN = "cancelled_by_admin"
    TRIGGERED = "stop_order_triggered"
    WOULD_NOT_REDUCE = "would_not_reduce_position"
    REDUCED = "reduce_only_quantity_reduced"
    LIQUIDATION = "liquidation"
    IOC_REMAINDER = "ioc_remainder_cancelled"


def dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def deterministic_uuid(seed: int, kind: str, counter: int) -> str:
    """A UUID-shaped id (version 4 layout) derived from the engine seed, a kind and a counter:
    ``str(uuid.UUID(bytes=sha256(...)[:16], version=4))``, built without the UUID object."""
    h = hashlib.sha256(f"bastion-sim:{seed}:{kind}:{counter}".encode()).hexdigest()
    variant = _VARIANT[h[16]]  # the top two bits of byte 8 become 10 (RFC 4122)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"  # version 4


_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


@fast_init
@dataclass(frozen=True, slots=True)
class SimOrder:
    """An order at the simulated venue.

    ``qty`` is the order's total size (fills included) after any edit or reduce-only reduction;
    ``remaining = qty - filled``. A trigger order keeps its id when it fires: ``triggered`` turns
    true and it then works as a market order (no ``limit_price``) or a limit order.
    """

    order_id: str
    account_id: str
    symbol: str
    side: Side
    kind: OrderKind
    qty: Decimal
    filled: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    trigger_signal: TriggerSignal | None
    reduce_only: bool
    cli_ord_id: str | None
    state: OrderState
    triggered: bool
    priority: int
    created_ts: int
    updated_ts: int
    filled_notional: Decimal = Decimal(0)
    reason: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    @property
    def awaiting_trigger(self) -> bool:
        return self.kind.is_trigger and not self.triggered

    @property
    def is_post_only(self) -> bool:
        return self.kind is OrderKind.POST

    @property
    def average_price(self) -> Decimal | None:
        return None if self.filled == 0 else self.filled_notional / self.filled

    # The versions an order goes through, built field by field (they are made for every order
    # and fill; ``dataclasses.replace`` would give the same object at twice the cost).

    def accepted(self, order_id: str, priority: int) -> SimOrder:
        """This order entered the book under ``order_id`` with ``priority``."""
        return SimOrder(
            order_id, self.account_id, self.symbol, self.side, self.kind, self.qty,
            self.filled, self.limit_price, self.stop_price, self.trigger_signal,
            self.reduce_only, self.cli_ord_id, self.state, self.triggered, priority,
            self.created_ts, self.updated_ts, self.filled_notional, Reason.NEW,
        )  # fmt: skip

    def executed(self, qty: Decimal, price: Decimal, now: int) -> SimOrder:
        """This order after ``qty`` more filled at ``price``."""
        filled = self.filled + qty
        done = filled >= self.qty
        return SimOrder(
            self.order_id, self.account_id, self.symbol, self.side, self.kind, self.qty,
            filled, self.limit_price, self.stop_price, self.trigger_signal, self.reduce_only,
            self.cli_ord_id, OrderState.FILLED if done else OrderState.PARTIALLY_FILLED,
            self.triggered, self.priority, self.created_ts, now,
            self.filled_notional + qty * price,
            Reason.FULL_FILL if done else Reason.PARTIAL_FILL,
        )  # fmt: skip

    def cancelled(self, now: int, reason: str) -> SimOrder:
        """This order cancelled (for ``reason``) at ``now``."""
        return SimOrder(
            self.order_id, self.account_id, self.symbol, self.side, self.kind, self.qty,
            self.filled, self.limit_price, self.stop_price, self.trigger_signal,
            self.reduce_only, self.cli_ord_id, OrderState.CANCELLED, self.triggered,
            self.priority, self.created_ts, now, self.filled_notional, reason,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "kind": self.kind.value,
            "qty": dec(self.qty),
            "filled": dec(self.filled),
            "limit_price": dec(self.limit_price),
            "stop_price": dec(self.stop_price),
            "trigger_signal": None if self.trigger_signal is None else self.trigger_signal.value,
            "reduce_only": self.reduce_only,
            "cli_ord_id": self.cli_ord_id,
            "state": self.state.value,
            "triggered": self.triggered,
            "priority": self.priority,
            "created_ts": self.created_ts,
            "updated_ts": self.updated_ts,
            "filled_notional": dec(self.filled_notional),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimOrder:
        signal = data["trigger_signal"]
        return cls(
            order_id=data["order_id"],
            account_id=data["account_id"],
            symbol=data["symbol"],
            side=Side(data["side"]),
            kind=OrderKind(data["kind"]),
            qty=Decimal(data["qty"]),
            filled=Decimal(data["filled"]),
            limit_price=undec(data["limit_price"]),
            stop_price=undec(data["stop_price"]),
            trigger_signal=None if signal is None else TriggerSignal(signal),
            reduce_only=bool(data["reduce_only"]),
            cli_ord_id=data["cli_ord_id"],
            state=OrderState(data["state"]),
            triggered=bool(data["triggered"]),
            priority=int(data["priority"]),
            created_ts=int(data["created_ts"]),
            updated_ts=int(data["updated_ts"]),
            filled_notional=Decimal(data["filled_notional"]),
            reason=data["reason"],
        )


@fast_init
@dataclass(frozen=True, slots=True)
class SimFill:
    """One execution. ``fill_type`` is ``maker``, ``taker`` or ``liquidation`` (venue words)."""

    fill_id: str
    order_id: str
    cli_ord_id: str | None
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    maker: bool
    fill_type: str
    order_kind: str
    remaining_order_qty: Decimal
    realized_pnl: Decimal
    ts: int
    seq: int

    def to_fill(self, symbol: str | None = None) -> Fill:
        """The domain view of this execution (under ``symbol`` when given)."""
        return Fill(
            fill_id=self.fill_id,
            symbol=self.symbol if symbol is None else symbol,
            side=self.side,
            qty=self.qty,
            price=self.price,
            ts=self.ts,
            client_id=self.cli_ord_id,
            exchange_order_id=self.order_id,
            fee=self.fee,
            fee_currency=self.fee_currency,
            maker=self.maker,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        out["side"] = self.side.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimFill:
        return cls(
            fill_id=data["fill_id"],
            order_id=data["order_id"],
            cli_ord_id=data["cli_ord_id"],
            account_id=data["account_id"],
            symbol=data["symbol"],
            side=Side(data["side"]),
            qty=Decimal(data["qty"]),
            price=Decimal(data["price"]),
            fee=Decimal(data["fee"]),
            fee_currency=data["fee_currency"],
            maker=bool(data["maker"]),
            fill_type=data["fill_type"],
            order_kind=data["order_kind"],
            remaining_order_qty=Decimal(data["remaining_order_qty"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            ts=int(data["ts"]),
            seq=int(data["seq"]),
        )


class Event:
    """One entry of the engine's ordered event log; ``data`` is JSON-ready.

    ``data`` may be given as a function that builds it (the ``to_dict`` of an immutable order,
    fill or position): it is built on first read, so the engine's order and fill paths do not
    pay for dicts nobody reads (a backtest reads none). Immutable otherwise.
    """

    __slots__ = ("_data", "account_id", "kind", "seq", "symbol", "ts")

    def __init__(
        self,
        seq: int,
        ts: int,
        kind: str,
        account_id: str | None,
        symbol: str | None,
        *,
        data: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> None:
        self.seq = seq
        self.ts = ts
        self.kind = kind
        self.account_id = account_id
        self.symbol = symbol
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        data = self._data
        if callable(data):
            data = self._data = data()
        return data

    def _key(self) -> tuple[Any, ...]:
        return (self.seq, self.ts, self.kind, self.account_id, self.symbol, self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Event(seq={self.seq!r}, ts={self.ts!r}, kind={self.kind!r}, "
            f"account_id={self.account_id!r}, symbol={self.symbol!r}, data={self.data!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            seq=int(data["seq"]),
            ts=int(data["ts"]),
            kind=data["kind"],
            account_id=data["account_id"],
            symbol=data["symbol"],
            data=data["data"],
        )


class CandleBar:
    """A one-minute bar recorded from a candle, its prices put on the grid when first read.

    Reads like a :class:`Bar` (``open_time``, ``open`` ... ``volume``, ``to_list``); ``bar()``
    is that :class:`Bar`. A replay walks a million candles and reads none of their bars, so
    the engine keeps the candle and the function that grids it, not the four prices.
    """

    __slots__ = ("_bar", "_candle", "_grid", "open_time")

    def __init__(
        self,
        open_time: int,
        candle: Candle,
        grid: Callable[[Candle], tuple[Decimal, Decimal, Decimal, Decimal]],
    ) -> None:
        self.open_time = open_time
        self._candle = candle
        self._grid = grid
        self._bar: Bar | None = None

    def bar(self) -> Bar:
        bar = self._bar
        if bar is None:
            o, h, low, c = self._grid(self._candle)
            bar = self._bar = Bar(self.open_time, o, h, low, c, to_decimal(self._candle.volume))
        return bar

    @property
    def open(self) -> Decimal:
        return self.bar().open

    @property
    def high(self) -> Decimal:
        return self.bar().high

    @property
    def low(self) -> Decimal:
        return self.bar().low

    @property
    def close(self) -> Decimal:
        return self.bar().close

    @property
    def volume(self) -> Decimal:
        return self.bar().volume

    def to_list(self) -> list[Any]:
        return self.bar().to_list()


def as_bar(bar: Bar | CandleBar) -> Bar:
    return bar if isinstance(bar, Bar) else bar.bar()


class LazyPrices(dict[str, Decimal]):
    """Prices by symbol, where a symbol's may be left as a candle's float close
    (:meth:`defer`) and put on the grid by ``grid(symbol, close)`` when first read.

    A replay moves every symbol's last and mark price on every candle, yet reads the prices of
    symbols holding nothing only when an order is placed on them. Reads go through the
    subscript; before iterating, :meth:`settle` grids whatever is still deferred.
    """

    __slots__ = ("_deferred", "_grid")

    def __init__(
        self, prices: Mapping[str, Decimal], grid: Callable[[str, float], Decimal]
    ) -> None:
        super().__init__(prices)
        self._deferred: dict[str, float] = {}
        self._grid = grid

    def defer(self, symbol: str, close: float) -> None:
        self._deferred[symbol] = close
        dict.pop(self, symbol, None)

    def __missing__(self, symbol: str) -> Decimal:
        close = self._deferred.get(symbol)
        if close is None:
            raise KeyError(symbol)
        price = self[symbol] = self._grid(symbol, close)  # a failure leaves it deferred
        del self._deferred[symbol]
        return price

    def reset(self, prices: Mapping[str, Decimal]) -> None:
        """Hold exactly ``prices``, nothing deferred (a restored engine's)."""
        self._deferred.clear()
        self.clear()
        self.update(prices)

    def settle(self) -> None:
        """Grid every deferred price (a later assignment wins over a deferred close)."""
        for symbol in list(self._deferred):
            if dict.__contains__(self, symbol):
                del self._deferred[symbol]
            else:
                self[symbol]


@fast_init
@dataclass(frozen=True, slots=True)
class SendResult:
    """Answer to ``send_order``: ``status`` is ``placed`` or a venue rejection status."""

    status: str
    order: SimOrder | None = None
    fills: tuple[SimFill, ...] = ()
    reduced_quantity: Decimal | None = None
    ts: int = 0

    @property
    def accepted(self) -> bool:
        return self.status == Status.PLACED


@dataclass(frozen=True, slots=True)
class EditResult:
    """Answer to ``edit_order``: ``edited`` or a rejection; ``old``/``order`` before and after."""

    status: str
    order: SimOrder | None = None
    old: SimOrder | None = None
    fills: tuple[SimFill, ...] = ()
    ts: int = 0


@dataclass(frozen=True, slots=True)
class CancelResult:
    """Answer to ``cancel_order``: ``cancelled``, ``notFound`` or ``filled``."""

    status: str
    order: SimOrder | None = None
    ts: int = 0


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    last: Decimal
    mark: Decimal
    index: Decimal
    bid: Decimal
    ask: Decimal
    open24h: Decimal
    high24h: Decimal
    low24h: Decimal
    vol24h: Decimal
    ts: int


@fast_init
@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar kept by the engine for the charts endpoint; ``open_time`` in ms."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def to_list(self) -> list[Any]:
        prices = (self.open, self.high, self.low, self.close, self.volume)
        return [self.open_time, *(str(v) for v in prices)]

    @classmethod
    def from_list(cls, row: list[Any]) -> Bar:
        return cls(int(row[0]), *(Decimal(v) for v in row[1:6]))
