"""Builders of positions in each state, shared by the domain, store and crash tests."""

from __future__ import annotations

import itertools
from decimal import Decimal

from domain.models import Fill, OrderRole, PositionSide, Side
from domain.position import Change, Position

SYMBOL = "PF_XBTUSD"
D = Decimal
_ids = itertools.count(1)
_clock = itertools.count(1_000)


def now() -> int:
    return next(_clock)


def fill(
    side: Side,
    qty: str,
    price: str = "100",
    client_id: str | None = None,
    symbol: str = SYMBOL,
) -> Fill:
    return Fill(f"f{next(_ids)}", symbol, side, D(qty), D(price), now(), client_id=client_id)


def entry_fill(pos: Position, qty: str, price: str = "100") -> Change | None:
    return pos.apply_fill(
        fill(pos.side.entry_side, qty, price, pos.entry_client_id, pos.symbol),
        OrderRole.ENTRY,
        at=now(),
    )


def exit_fill(
    pos: Position, qty: str, role: OrderRole = OrderRole.EXIT, client_id: str | None = None
) -> Change | None:
    return pos.apply_fill(
        fill(pos.side.exit_side, qty, "101", client_id, pos.symbol), role, at=now()
    )


def stop_fill(pos: Position, qty: str) -> Change | None:
    assert pos.data.stop_resting is not None
    return exit_fill(pos, qty, OrderRole.STOP, pos.data.stop_resting.client_id)


def place_stop(pos: Position, price: str = "90", qty: str | None = None) -> Change:
    change = pos.submit_stop(D(price), at=now(), qty=None if qty is None else D(qty))
    return pos.on_stop_acked(change.orders[0].client_id, at=now(), exchange_id="X")


def pending(
    pid: str | None = None, side: PositionSide = PositionSide.LONG, symbol: str = SYMBOL
) -> Position:
    pos, _ = Position.open(pid or f"p{next(_ids)}", symbol, side, D(2), at=now())
    return pos


def unprotected(symbol: str = SYMBOL) -> Position:
    """Long, entry working, 1 of 2 filled, no stop."""
    pos = pending(symbol=symbol)
    entry_fill(pos, "1")
    return pos


def protected(symbol: str = SYMBOL) -> Position:
    """Long, entry working, 1 of 2 filled, a stop at 90 for 1 resting."""
    pos = unprotected(symbol=symbol)
    place_stop(pos)
    return pos


def exiting(symbol: str = SYMBOL) -> Position:
    pos = protected(symbol=symbol)
    pos.request_exit(at=now(), reason="test")
    return pos


def quarantined(symbol: str = SYMBOL) -> Position:
    pos = protected(symbol=symbol)
    pos.quarantine("test", at=now())
    return pos


def entry_done(pos: Position) -> Position:
    """The rest of a working entry is cancelled (nothing more can fill)."""
    pos.on_entry_cancelled(pos.entry_client_id, at=now())
    return pos


def closed(symbol: str = SYMBOL) -> Position:
    """Entry ended after 1 of 2, then the stop filled."""
    pos = entry_done(protected(symbol=symbol))
    stop_fill(pos, "1")
    return pos


def cancelled(symbol: str = SYMBOL) -> Position:
    pos = pending(symbol=symbol)
    pos.on_entry_cancelled(pos.entry_client_id, at=now())
    return pos
