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

TIMEFRAME_MS: Mapping[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}


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
