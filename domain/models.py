"""Immutable domain models shared by every layer.

Prices and quantities that may reach an exchange are ``Decimal`` and are put on the
instrument's grid by :mod:`domain.precision`. Candles carry floats: they are observations fed
to numeric analysis and never sent anywhere; anything derived from them is rounded through
:class:`Instrument` first.
Times are integer milliseconds since the Unix epoch (UTC); the domain never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from domain.errors import PrecisionError
from domain.precision import Number, Rounding, to_decimal, to_step
from domain.values import fast_init


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class PositionSide(StrEnum):
    """Direction of exposure."""

    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return self.entry_side.opposite


class OrderRole(StrEnum):
    """What an order is for; the value is the code used in client order ids."""

    ENTRY = "en"
    STOP = "sl"
    TAKE_PROFIT = "tp"
    EXIT = "ex"

    @property
    def reduces(self) -> bool:
        return self is not OrderRole.ENTRY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    TAKE_PROFIT = "take_profit"


class OrderStatus(StrEnum):
    """Journal status of an order (ARCHITECTURE rule 1)."""

    SENDING = "sending"  # written ahead, not yet answered
    ACKED = "acked"  # accepted by the venue, working
    REJECTED = "rejected"  # definitively refused
    UNKNOWN = "unknown"  # timeout or lost connection: resolve by query before any re-send
    FILLED = "filled"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in {OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELLED}


class Origin(StrEnum):
    """Where a managed position came from."""

    STRATEGY = "strategy"
    ADOPTED = "adopted"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract and its grid.

    ``lot_size`` is the quantity step (in contracts), ``min_size`` the smallest order quantity,
    ``contract_size`` the base-currency amount one contract represents.
    """

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal
    contract_size: Decimal = Decimal(1)
    max_leverage: Decimal = Decimal(50)
    unified_symbol: str = ""

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "min_size", "contract_size", "max_leverage"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise PrecisionError(f"{self.symbol}: {name} must be a positive Decimal")

    def round_price(self, price: Number, rounding: Rounding = Rounding.NEAREST) -> Decimal:
        return to_step(price, self.tick_size, rounding)

    def round_qty(self, qty: Number, rounding: Rounding = Rounding.DOWN) -> Decimal:
        return to_step(qty, self.lot_size, rounding)

    def order_qty(self, qty: Number) -> Decimal:
        """Quantity safe to send: rounded down to the lot; refused if below the minimum size."""
        rounded = self.round_qty(qty, Rounding.DOWN)
        if rounded < self.min_size:
            raise PrecisionError(
                f"{self.symbol}: quantity {to_decimal(qty)} rounds to {rounded}, "
                f"below the minimum size {self.min_size}"
            )
        return rounded

    def stop_price(self, price: Number, position_side: PositionSide) -> Decimal:
        """A protective stop on the grid, rounded toward the position's profit side.

        A long's stop rounds up and a short's rounds down, so rounding only ever tightens it.
        """
        rounding = Rounding.UP if position_side is PositionSide.LONG else Rounding.DOWN
        return self.round_price(price, rounding)


@fast_init
@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; ``open_time`` is the bar's start in ms."""

    symbol: str
    timeframe: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True


@fast_init
@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's proposal for one symbol."""

    symbol: str
    side: PositionSide
    entry_price: Decimal
    stop_price: Decimal
    targets: tuple[Decimal, ...]
    score: float
    reasons: tuple[str, ...]
    created_at: int
    expires_at: int
    strategy: str
    timeframe: str
    entry_zone: tuple[Decimal, Decimal] | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A risk-approved, sized request to open a position."""

    symbol: str
    side: PositionSide
    qty: Decimal
    entry_type: OrderType
    entry_price: Decimal | None
    stop_price: Decimal
    take_profits: tuple[tuple[Decimal, Decimal], ...] = ()  # (price, qty)
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    strategy: str = ""
    created_at: int = 0
    expires_at: int = 0  # a working entry is cancelled at this time (ms); 0 = never


@fast_init
@dataclass(frozen=True, slots=True)
class Order:
    """An order as Bastion knows it (journal row and exchange view)."""

    client_id: str
    symbol: str
    role: OrderRole
    type: OrderType
    side: Side
    qty: Decimal
    reduce_only: bool
    status: OrderStatus
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    exchange_id: str | None = None
    position_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    trigger_signal: str | None = None  # stops: "last" or "mark"; None = the adapter's default


@fast_init
@dataclass(frozen=True, slots=True)
class Fill:
    """One execution; ``fill_id`` is unique at the venue and makes fills idempotent."""

    fill_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    ts: int
    client_id: str | None = None
    exchange_order_id: str | None = None
    fee: Decimal = Decimal(0)
    fee_currency: str = ""
    maker: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """An exchange's view of one position."""

    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    liquidation_price: Decimal | None = None
    leverage: Decimal | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class AccountState:
    """Equity and margin of one account, in the settlement currency."""

    currency: str
    equity: Decimal
    available_margin: Decimal
    used_margin: Decimal
    unrealized_pnl: Decimal = Decimal(0)
    ts: int = 0
    balances: dict[str, Decimal] = field(default_factory=dict)

    @property
    def margin_utilisation(self) -> Decimal:
        if self.equity <= 0:
            return Decimal(1)
        return self.used_margin / self.equity


@fast_init
@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A journal status change for an order that already has a row."""

    client_id: str
    status: OrderStatus
    exchange_id: str | None = None
    reason: str = ""
