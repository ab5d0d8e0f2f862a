"""Reconciliation decisions: the registry against the exchange (ARCHITECTURE 4). Pure: no I/O.

:func:`plan` compares what Bastion manages (:class:`Managed`, one per live position) with what the
venue reports (positions and open orders, fetched successfully: a failed fetch never reaches this
module, so "no position here" always means the venue said so). It classifies every symbol and
lists the actions that make the two agree, in the order they must run:

1. ``CloseAbsent``: a managed position with exposure the venue has not shown for two passes in a
   row is closed with its last fills (one absence is only counted: ``Recheck``). A position on
   the *opposite* side at the venue is positive evidence and closes it at once.
2. ``Adopt``: exposure no managed position explains, seen on two passes (one sighting could
   be a stale read just after a close of our own), becomes a managed position (origin
   ``adopted``) with a stop ``adopt_stop_frac`` beyond the worse of entry and mark.
3. ``AdjustQty``: a managed position whose size differs from the venue's for two passes in a row
   (every fill the venue reported applied in between; one pass could race a fill) follows the
   venue; its stop is then re-sized.
4. ``ForgetStop``: a stop the registry believes rests but the venue no longer has.
5. ``PlaceStop``: a position without exactly one correct stop gets one (placed before any
   extra is cancelled, so it is never left naked in between).
6. ``CancelOrder``: extra or wrong stops, and orphans (orders of Bastion's for positions that
   no longer live; reduce-only orders on a symbol with no position). Orders of others that open
   exposure (a manual limit entry) are reported, never cancelled.

A *correct* stop is a reduce-only stop on the position's exit side whose quantity equals the
position's size and whose trigger lies on the loss side of the mark price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from domain.models import Instrument, Order, OrderRole, OrderType, PositionSide, PositionSnapshot
from domain.ports import order_origin
from domain.position import Position
from domain.position_table import State

ZERO = Decimal(0)
ABSENT_PASSES_TO_CLOSE = 2


class Classification(StrEnum):
    PROTECTED = "protected"  # exactly one correct stop, the registry's own
    NAKED = "naked"  # exposure and no stop at all
    CHAOS = "chaos"  # several stops, or a wrong one (side, size, trigger), or not ours
    UNKNOWN = "unknown"  # exposure no managed position explains: adopted
    MISMATCH = "mismatch"  # managed, but the venue's size differs
    ABSENT = "absent"  # managed with exposure, the venue shows none
    PENDING = "pending"  # managed, no exposure yet (an entry working)


@dataclass(frozen=True, slots=True)
class Managed:
    """What reconciliation needs to know of one live managed position."""

    position_id: str
    symbol: str
    side: PositionSide
    state: State
    remaining: Decimal
    tracked: frozenset[str] = frozenset()  # client ids the position still follows
    stop_client_id: str | None = None  # the resting stop the registry believes in
    stop_qty: Decimal = ZERO
    stop_price: Decimal | None = None
    stop_in_flight: bool = False
    doubt_passes: int = 0

    @classmethod
    def of(cls, pos: Position, doubt_passes: int = 0) -> Managed:
        d = pos.data
        stop = d.stop_resting
        return cls(
            pos.id,
            pos.symbol,
            pos.side,
            pos.current,
            d.remaining,
            pos.tracked(),
            stop.client_id if stop else None,
            stop.qty if stop else ZERO,
            stop.price if stop else None,
            d.stop_pending is not None,
            doubt_passes,
        )


@dataclass(frozen=True, slots=True)
class CloseAbsent:
    position_id: str
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Recheck:
    """A doubt counted, not acted on: the next pass confirms it (or clears it). Unknown
    exposure has no position id."""

    position_id: str | None
    symbol: str
    passes: int
    reason: str


@dataclass(frozen=True, slots=True)
class Adopt:
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    stop_price: Decimal


@dataclass(frozen=True, slots=True)
class AdjustQty:
    position_id: str
    symbol: str
    delta: Decimal  # venue size minus registry size
    price: Decimal


@dataclass(frozen=True, slots=True)
class ForgetStop:
    position_id: str
    symbol: str
    client_id: str


@dataclass(frozen=True, slots=True)
class PlaceStop:
    position_id: str | None  # None: the position adopted in this same plan
    symbol: str
    side: PositionSide
    qty: Decimal
    price: Decimal | None  # None: execution keeps the position's own stop price


@dataclass(frozen=True, slots=True)
class CancelOrder:
    symbol: str
    client_id: str | None
    exchange_id: str | None
    reason: str
    only_if_protected: bool = False  # an extra stop: cancelled once the right one rests


Action = CloseAbsent | Recheck | Adopt | AdjustQty | ForgetStop | PlaceStop | CancelOrder
ORDER: tuple[type, ...] = (
    CloseAbsent,
    Recheck,
    Adopt,
    AdjustQty,
    ForgetStop,
    PlaceStop,
    CancelOrder,
)


@dataclass(frozen=True, slots=True)
class SymbolReport:
    symbol: str
    classification: Classification
    position_id: str | None
    venue_qty: Decimal
    registry_qty: Decimal
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    reports: tuple[SymbolReport, ...]
    actions: tuple[Action, ...]
    untouched: tuple[Order, ...] = ()  # orders of others left alone (reported)

    @property
    def settled(self) -> bool:
        """True when nothing is left to confirm on a later pass (no absence merely counted)."""
        return not any(isinstance(a, Recheck) for a in self.actions)


@dataclass(frozen=True, slots=True)
class Venue:
    """One successful read of the venue."""

    positions: Sequence[PositionSnapshot]
    orders: Sequence[Order]
    instruments: Mapping[str, Instrument] = field(default_factory=dict)


def is_stop(order: Order) -> bool:
    return order.type is OrderType.STOP or order.role is OrderRole.STOP


def stop_is_correct(order: Order, position: PositionSnapshot) -> bool:
    """A reduce-only stop on the exit side, sized to the position, triggering on the loss side."""
    if not (is_stop(order) and order.reduce_only and order.side is position.side.exit_side):
        return False
    if order.qty - order.filled_qty != position.qty or order.trigger_price is None:
        return False
    mark = position.mark_price
    if mark is None:
        return True
    if position.side is PositionSide.LONG:
        return order.trigger_price < mark
    return order.trigger_price > mark


def adopted_stop_price(
    side: PositionSide, entry: Decimal, mark: Decimal | None, frac: Decimal, inst: Instrument | None
) -> Decimal:
    """``frac`` beyond the worse of entry and mark, on the loss side, on the grid."""
    if side is PositionSide.LONG:
        worse = min(entry, mark) if mark is not None else entry
        raw = worse * (1 - frac)
    else:
        worse = max(entry, mark) if mark is not None else entry
        raw = worse * (1 + frac)
    return inst.stop_price(raw, side) if inst is not None else raw


def plan(
    managed: Sequence[Managed],
    venue: Venue,
    adopt_stop_frac: Decimal,
    confirmed_unknown: frozenset[str] = frozenset(),
) -> Plan:
    """Decide what makes the registry and the venue agree (module docstring).

    ``managed[i].doubt_passes`` and ``confirmed_unknown`` (symbols) say which doubts an earlier
    pass already saw: only those are acted on.
    """
    by_symbol = {m.symbol: m for m in managed}
    live_ids = {m.position_id for m in managed}
    exposure = {p.symbol: p for p in venue.positions if p.qty > 0}
    orders_by_symbol: dict[str, list[Order]] = {}
    for order in venue.orders:
        orders_by_symbol.setdefault(order.symbol, []).append(order)
    reports: list[SymbolReport] = []
    actions: list[Action] = []
    untouched: list[Order] = []
    for symbol in sorted(set(by_symbol) | set(exposure) | set(orders_by_symbol)):
        mine = by_symbol.get(symbol)
        held = exposure.get(symbol)
        orders = orders_by_symbol.get(symbol, [])
        if mine is not None and _gone(mine, held):
            report, acts = _absent(mine, held)
            reports.append(report)
            actions.extend(acts)
            if isinstance(acts[0], Recheck):
                continue  # still managed: its orders stay as they are until confirmed
            live_ids.discard(mine.position_id)
            mine = None
        if held is not None:
            confirmed = held.symbol in confirmed_unknown
            report, acts = _exposed(
                mine, held, orders, venue.instruments, adopt_stop_frac, confirmed=confirmed
            )
            reports.append(report)
            actions.extend(acts)
        elif mine is not None:
            reports.append(
                SymbolReport(symbol, Classification.PENDING, mine.position_id, ZERO, ZERO)
            )
        for order in orders:
            verdict = _orphan(order, mine, held, live_ids)
            if verdict is True:
                actions.append(_cancel(order, _orphan_reason(order)))
            elif verdict is None:
                untouched.append(order)
    actions.sort(key=lambda a: ORDER.index(type(a)))
    return Plan(tuple(reports), tuple(actions), tuple(untouched))


def _gone(mine: Managed, held: PositionSnapshot | None) -> bool:
    """The venue shows none of this position's exposure, or plainly another position."""
    if held is None:
        return mine.remaining > 0
    return held.side != mine.side


def _absent(mine: Managed, held: PositionSnapshot | None) -> tuple[SymbolReport, list[Action]]:
    venue_qty = held.qty if held is not None else ZERO
    if held is not None:  # the opposite side: the venue says plainly ours is gone
        passes = ABSENT_PASSES_TO_CLOSE
        reason = f"the venue holds a {held.side.value} position instead"
    else:
        passes = mine.doubt_passes + 1
        reason = f"absent at the venue for {passes} pass(es)"
    report = SymbolReport(
        mine.symbol, Classification.ABSENT, mine.position_id, venue_qty, mine.remaining, reason
    )
    if passes >= ABSENT_PASSES_TO_CLOSE:
        return report, [CloseAbsent(mine.position_id, mine.symbol, reason)]
    return report, [Recheck(mine.position_id, mine.symbol, passes, reason)]


def _exposed(
    mine: Managed | None,
    held: PositionSnapshot,
    orders: list[Order],
    instruments: Mapping[str, Instrument],
    frac: Decimal,
    *,
    confirmed: bool,
) -> tuple[SymbolReport, list[Action]]:
    symbol = held.symbol
    stops = [o for o in orders if is_stop(o) and o.reduce_only]
    if mine is None and not confirmed:
        reason = f"unknown {held.side.value} {held.qty} at the venue"
        report = SymbolReport(symbol, Classification.UNKNOWN, None, held.qty, ZERO, reason)
        return report, [Recheck(None, symbol, 1, reason)]
    if mine is None:
        price = adopted_stop_price(
            held.side, held.entry_price, held.mark_price, frac, instruments.get(symbol)
        )
        actions: list[Action] = [
            Adopt(symbol, held.side, held.qty, held.entry_price, price),
            PlaceStop(None, symbol, held.side, held.qty, price),
            *(_cancel(o, "replaced by the adopted position's stop", True) for o in stops),
        ]
        return SymbolReport(symbol, Classification.UNKNOWN, None, held.qty, ZERO), actions
    pid = mine.position_id
    ours = next((o for o in stops if o.client_id == mine.stop_client_id), None)
    others = [o for o in stops if o is not ours and o.client_id not in mine.tracked]
    actions = []
    if mine.stop_client_id is not None and ours is None:
        actions.append(ForgetStop(pid, symbol, mine.stop_client_id))
    if mine.remaining != held.qty:
        detail = f"registry {mine.remaining}, venue {held.qty}"
        passes = mine.doubt_passes + 1
        if passes < ABSENT_PASSES_TO_CLOSE:
            actions.append(Recheck(pid, symbol, passes, detail))
        else:
            price = held.mark_price or held.entry_price
            actions.append(AdjustQty(pid, symbol, held.qty - mine.remaining, price))
            actions.append(PlaceStop(pid, symbol, held.side, held.qty, None))
            actions.extend(_cancel(o, "extra stop", True) for o in others)
        report = SymbolReport(
            symbol, Classification.MISMATCH, pid, held.qty, mine.remaining, detail
        )
        return report, actions
    right = ours is not None and stop_is_correct(ours, held)
    if right and not others:
        cls = Classification.PROTECTED
    elif not stops:
        cls = Classification.NAKED
    else:
        cls = Classification.CHAOS
    if not right and not mine.stop_in_flight:
        actions.append(PlaceStop(pid, symbol, held.side, held.qty, None))
    actions.extend(_cancel(o, "extra or wrong stop", True) for o in others)
    return SymbolReport(symbol, cls, pid, held.qty, mine.remaining), actions


def _cancel(order: Order, reason: str, only_if_protected: bool = False) -> CancelOrder:
    return CancelOrder(order.symbol, order.client_id, order.exchange_id, reason, only_if_protected)


def _orphan(
    order: Order, mine: Managed | None, held: PositionSnapshot | None, live_ids: set[str]
) -> bool | None:
    """True: cancel it; False: it belongs, or :func:`_exposed` decides; None: not ours, left."""
    if held is not None and is_stop(order) and order.reduce_only:
        return False  # every stop on an exposed symbol is judged by _exposed
    role, position_id = order_origin(order.client_id, order.type, order.reduce_only)
    if position_id is not None:
        if position_id not in live_ids:
            return True  # an order of a position that no longer lives
        stale = role in (OrderRole.ENTRY, OrderRole.EXIT)
        return stale and mine is not None and order.client_id not in mine.tracked
    if order.reduce_only and held is None:
        return True  # a reduce-only order with nothing to reduce
    return None


def _orphan_reason(order: Order) -> str:
    role, position_id = order_origin(order.client_id, order.type, order.reduce_only)
    if position_id is None:
        return f"orphan {role.value}: reduce-only with no position at the venue"
    return f"orphan {role.value}: position {position_id} no longer lives"
