"""The exchange port: everything above ``adapters/`` reaches an exchange only through this.

Symbols are ccxt unified symbols (``BTC/USD:USD``) everywhere on the port; each implementation
maps them to its venue's ids. Values are domain models with ``Decimal`` on the instrument grid,
never venue payloads.

Errors are the four outcome classes of :mod:`domain.errors`:

- ``Temporary``: nothing happened; the call may be retried after a back-off. Implementations
  already retry *reads* a few times (with jitter) before raising it.
- ``Rejected``: the venue refused; ``reason`` carries its words. Never retried as is.
- ``AmbiguousOutcome``: a *write* may or may not have taken effect (timeout, dropped connection,
  5xx after sending, duplicate client id). Never re-sent: resolve with
  :meth:`ExchangePort.order_by_client_id` (and fills) first.
- ``Fatal``: stop safely (bad credentials, no permission).

Writes are never retried inside an implementation. ``urgent`` marks protective traffic (stops,
flattening exits and the look-ups that resolve them): implementations must not queue it behind
ordinary reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol, runtime_checkable

from domain.errors import PrecisionError
from domain.models import (
    AccountState,
    Candle,
    Fill,
    Instrument,
    Order,
    OrderRole,
    OrderType,
    PositionSnapshot,
)
from domain.position_data import parse_client_order_id
from domain.precision import is_multiple


@runtime_checkable
class ExchangePort(Protocol):
    """What Bastion needs from a futures venue (one account, one-way positions)."""

    @property
    def name(self) -> str:
        """A short venue name for logs (``krakenfutures``, ``sim``)."""
        ...

    def instruments(self) -> Mapping[str, Instrument]:
        """Tradable contracts keyed by unified symbol (``Instrument.symbol`` is that key)."""
        ...

    def account(self) -> AccountState:
        """Equity and margin in the settlement currency."""
        ...

    def positions(self) -> list[PositionSnapshot]:
        """Every non-zero position of the account."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Working orders, untriggered stops and take-profits included.

        Orders Bastion placed carry their role and position id (parsed from the client id);
        others carry ``position_id=None`` and a role inferred from their type.
        """
        ...

    def place_order(self, order: Order) -> Order:
        """Send ``order`` (already journaled as ``sending``); returns the venue's view of it.

        The quantity and prices must already lie on the instrument's grid; an order that does
        not is refused with ``PrecisionError`` before anything is sent. Protective roles (stop,
        exit) are urgent.
        """
        ...

    def cancel_order(
        self,
        symbol: str,
        *,
        exchange_id: str | None = None,
        client_id: str | None = None,
        urgent: bool = False,
    ) -> Order | None:
        """Cancel a working order; ``None`` when it was not open (filled, cancelled, unknown)."""
        ...

    def order_by_client_id(
        self, symbol: str, client_id: str, *, urgent: bool = False
    ) -> Order | None:
        """The venue's view of an order by our client id: open, recently ended, or known only
        through its fills (then ``FILLED`` with the filled quantity); ``None`` if the venue has
        never seen it."""
        ...

    def fills(self, *, since: int | None = None, symbol: str | None = None) -> list[Fill]:
        """Executions of the account, oldest first, at or after ``since`` (ms)."""
        ...

    def ohlcv(
        self, symbol: str, timeframe: str, since: int, until: int | None = None
    ) -> list[Candle]:
        """Closed candles from ``since`` (ms, inclusive) up to ``until`` or now, paginated."""
        ...

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        """Set the account's leverage preference for ``symbol``."""
        ...


def order_origin(
    client_id: str | None, order_type: OrderType, reduce_only: bool
) -> tuple[OrderRole, str | None]:
    """Role and position of an order seen at the venue.

    Bastion's own orders say so in their client id. Anything else (a manual order, another
    program's) gets ``position_id=None`` and a role inferred from its type: stop, take-profit,
    a reduce-only exit, or an entry.
    """
    parsed = parse_client_order_id(client_id) if client_id else None
    if parsed is not None:
        return parsed[1], parsed[0]
    if order_type is OrderType.STOP:
        return OrderRole.STOP, None
    if order_type is OrderType.TAKE_PROFIT:
        return OrderRole.TAKE_PROFIT, None
    return (OrderRole.EXIT if reduce_only else OrderRole.ENTRY), None


def check_order_grid(order: Order, instrument: Instrument) -> None:
    """Refuse, before anything is sent, an order that is not on the instrument's grid.

    The quantity must be a lot multiple of at least the minimum size; the prices that are sent
    (a limit's price, a trigger order's trigger price) must be positive tick multiples.
    """
    qty = order.qty
    if qty < instrument.min_size or not is_multiple(qty, instrument.lot_size):
        raise PrecisionError(
            f"{order.client_id}: quantity {qty} is not a multiple of the lot "
            f"{instrument.lot_size} of at least {instrument.min_size}"
        )
    if order.type is OrderType.LIMIT and order.price is None:
        raise PrecisionError(f"{order.client_id}: a limit order needs a price")
    if order.type in (OrderType.STOP, OrderType.TAKE_PROFIT) and order.trigger_price is None:
        raise PrecisionError(f"{order.client_id}: a trigger order needs a trigger price")
    sent = {
        "price": None if order.type is OrderType.MARKET else order.price,
        "trigger price": order.trigger_price
        if order.type in (OrderType.STOP, OrderType.TAKE_PROFIT)
        else None,
    }
    for label, price in sent.items():
        if price is not None and (price <= 0 or not is_multiple(price, instrument.tick_size)):
            raise PrecisionError(
                f"{order.client_id}: {label} {price} is not a positive multiple of the tick "
                f"{instrument.tick_size}"
            )
