"""Engine values to domain values for :class:`~adapters.sim.inprocess.InProcessExchange`.

Decisions:

- Order status: open (untouched, partially filled, untriggered) -> ``ACKED``; ``FILLED``;
  ``CANCELLED`` (a partly filled order cancelled later keeps its ``filled_qty``).
- Order type: ``lmt``, ``post`` and ``ioc`` are all ``LIMIT``; ``stp`` -> ``STOP`` and
  ``take_profit`` -> ``TAKE_PROFIT`` with the trigger in ``trigger_price`` and a stop-limit's
  limit in ``price``. ``qty`` is the venue's (after any reduce-only reduction).
- Role and position id come from :func:`domain.ports.order_origin`; an order without a client
  id has ``client_id=""``.
- Candles: the engine's 1m bars grouped into buckets aligned to the Unix epoch (so UTC days and
  hours); a bucket is closed once the engine clock has reached its last millisecond
  (``on_candles`` leaves the clock there) and only closed buckets are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from adapters.sim.models import Bar, OrderKind, OrderState, SimFill, SimOrder
from domain.models import Candle, Fill, Order, OrderStatus, OrderType
from domain.ports import order_origin
from domain.timeframes import TIMEFRAME_MS

SEND_KINDS: dict[OrderType, OrderKind] = {
    OrderType.MARKET: OrderKind.MARKET,
    OrderType.LIMIT: OrderKind.LIMIT,
    OrderType.STOP: OrderKind.STOP,
    OrderType.TAKE_PROFIT: OrderKind.TAKE_PROFIT,
}
_TYPES: dict[OrderKind, OrderType] = {
    OrderKind.MARKET: OrderType.MARKET,
    OrderKind.LIMIT: OrderType.LIMIT,
    OrderKind.POST: OrderType.LIMIT,
    OrderKind.IOC: OrderType.LIMIT,
    OrderKind.STOP: OrderType.STOP,
    OrderKind.TAKE_PROFIT: OrderType.TAKE_PROFIT,
}
_STATUS: dict[OrderState, OrderStatus] = {
    OrderState.UNTOUCHED: OrderStatus.ACKED,
    OrderState.PARTIALLY_FILLED: OrderStatus.ACKED,
    OrderState.FILLED: OrderStatus.FILLED,
    OrderState.CANCELLED: OrderStatus.CANCELLED,
}


# Views already made, by engine id: (engine object, unified symbol, view). Engine orders and
# fills are immutable (a change replaces the object), so the same object under the same
# symbol has the same view; the views are immutable too, so they are shared.
_VIEWS_MAX = 4096
_ORDER_VIEWS: dict[str, tuple[SimOrder, str, Order]] = {}
_FILL_VIEWS: dict[str, tuple[SimFill, str, Fill]] = {}


def to_order(order: SimOrder, symbol: str) -> Order:
    """The domain view of an engine order; ``symbol`` is its unified symbol."""
    cached = _ORDER_VIEWS.get(order.order_id)
    if cached is not None and cached[0] is order and cached[1] == symbol:
        return cached[2]
    view = _to_order(order, symbol)
    if len(_ORDER_VIEWS) >= _VIEWS_MAX:
        _ORDER_VIEWS.clear()
    _ORDER_VIEWS[order.order_id] = (order, symbol, view)
    return view


def _to_order(order: SimOrder, symbol: str) -> Order:
    order_type = _TYPES[order.kind]
    role, position_id = order_origin(order.cli_ord_id, order_type, order.reduce_only)
    return Order(
        client_id=order.cli_ord_id or "",
        symbol=symbol,
        role=role,
        type=order_type,
        side=order.side,
        qty=order.qty,
        reduce_only=order.reduce_only,
        status=_STATUS[order.state],
        price=order.limit_price,
        trigger_price=order.stop_price,
        exchange_id=order.order_id,
        position_id=position_id,
        filled_qty=order.filled,
    )


def order_from_fills(fills: Sequence[SimFill], symbol: str, client_id: str) -> Order:
    """An order known only through its fills (the engine no longer retains it): ``FILLED``
    with ``qty = filled_qty =`` the fills' sum; ``reduce_only`` follows the role its client id
    names, since the fills do not say."""
    last = fills[-1]
    try:
        order_type = _TYPES[OrderKind(last.order_kind)]
    except ValueError:
        order_type = OrderType.MARKET
    role, position_id = order_origin(client_id, order_type, False)
    filled = sum((f.qty for f in fills), Decimal(0))
    return Order(
        client_id=client_id,
        symbol=symbol,
        role=role,
        type=order_type,
        side=last.side,
        qty=filled,
        reduce_only=role.reduces,
        status=OrderStatus.FILLED,
        exchange_id=last.order_id,
        position_id=position_id,
        filled_qty=filled,
    )


def to_fill(fill: SimFill, symbol: str) -> Fill:
    cached = _FILL_VIEWS.get(fill.fill_id)
    if cached is not None and cached[0] is fill and cached[1] == symbol:
        return cached[2]
    view = fill.to_fill(symbol)
    if len(_FILL_VIEWS) >= _VIEWS_MAX:
        _FILL_VIEWS.clear()
    _FILL_VIEWS[fill.fill_id] = (fill, symbol, view)
    return view


def aggregate(
    bars: Sequence[Bar], symbol: str, timeframe: str, *, now: int, since: int, until: int | None
) -> list[Candle]:
    """Closed ``timeframe`` candles from ascending 1m ``bars``, with ``since <= open_time``
    and ``open_time <= until`` (when given)."""
    step = TIMEFRAME_MS[timeframe]
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        start = bar.open_time - bar.open_time % step
        if start < since or (until is not None and start > until) or start + step - 1 > now:
            continue
        groups.setdefault(start, []).append(bar)
    return [
        Candle(
            symbol=symbol,
            timeframe=timeframe,
            open_time=start,
            open=float(group[0].open),
            high=float(max(b.high for b in group)),
            low=float(min(b.low for b in group)),
            close=float(group[-1].close),
            volume=float(sum((b.volume for b in group), Decimal(0))),
        )
        for start, group in groups.items()
    ]
