"""Managed positions: one shared ``transitions`` machine over the table in
:mod:`domain.position_table`.

A :class:`Position` holds its mutable facts in one immutable :class:`PositionData` value. Every
public method computes the prospective data of an event, asks the machine whether the event is
allowed and where it leads (conditions read the prospective data), and only then swaps state and
data together. An event that is not allowed raises :class:`InvalidTransition` and changes nothing
(rule 6). Each successful event returns a :class:`Change`: the transition, the journal rows it
writes ahead and the fills it records, which the store commits in one transaction (rule 7).

Positions are owned by one thread at a time (the execution actor); the shared machine is not
locked. Terminal positions leave the machine so it does not grow without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from transitions import Machine

from domain.errors import DomainError, InvalidTransition, StopLoosening
from domain.models import (
    Fill,
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Origin,
    PositionSide,
)
from domain.position_table import TERMINAL, TRANSITIONS, TRIGGERS, State

ZERO = Decimal(0)
CLIENT_ID_PREFIX = "bst"


def client_order_id(position_id: str, role: OrderRole, attempt: int) -> str:
    """Deterministic client order id ``bst-<position>-<role>-<attempt>`` (rule 1)."""
    return f"{CLIENT_ID_PREFIX}-{position_id}-{role.value}-{attempt}"


def parse_client_order_id(client_id: str) -> tuple[str, OrderRole, int] | None:
    """Inverse of :func:`client_order_id`; ``None`` for ids Bastion did not make."""
    if not client_id.startswith(CLIENT_ID_PREFIX + "-"):
        return None
    parts = client_id[len(CLIENT_ID_PREFIX) + 1 :].rsplit("-", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    try:
        role = OrderRole(parts[1])
    except ValueError:
        return None
    return parts[0], role, int(parts[2])


@dataclass(frozen=True, slots=True)
class StopRef:
    """A stop order of this position: in flight (pending) or resting at the exchange."""

    client_id: str
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class FillRecord:
    """A fill as applied to a position."""

    fill_id: str
    role: OrderRole
    qty: Decimal
    price: Decimal
    ts: int
    fee: Decimal = ZERO
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PositionData:
    """Everything about a position that events change. Replaced whole, never mutated."""

    entry_filled: Decimal = ZERO
    entry_cost: Decimal = ZERO  # sum of qty * price over entry fills
    exit_filled: Decimal = ZERO
    exit_proceeds: Decimal = ZERO  # sum of qty * price over exit fills
    fees: Decimal = ZERO
    fill_ids: frozenset[str] = frozenset()
    deferred_exits: tuple[FillRecord, ...] = ()  # exit fills seen before the entries they close
    stop_resting: StopRef | None = None
    stop_pending: StopRef | None = None
    exit_client_id: str | None = None
    entry_working: bool = False
    attempts: Mapping[str, int] = field(default_factory=dict)
    quarantine_reason: str = ""
    updated_at: int = 0

    @property
    def remaining(self) -> Decimal:
        """Rule 3: remaining = entry fills - exit fills."""
        return self.entry_filled - self.exit_filled

    @property
    def avg_entry_price(self) -> Decimal | None:
        return self.entry_cost / self.entry_filled if self.entry_filled else None

    @property
    def avg_exit_price(self) -> Decimal | None:
        return self.exit_proceeds / self.exit_filled if self.exit_filled else None


@dataclass(frozen=True, slots=True)
class Change:
    """One committed event: what the store writes in a single transaction."""

    position_id: str
    trigger: str
    source: State | None  # None when the position is created
    dest: State
    version: int  # the position's version after the change
    at: int
    detail: Mapping[str, Any] = field(default_factory=dict)
    orders: tuple[Order, ...] = ()  # new journal rows, written with status "sending"
    order_updates: tuple[OrderUpdate, ...] = ()
    fills: tuple[FillRecord, ...] = ()


class Position:
    """A managed position; its ``state`` attribute is driven by the shared machine."""

    # bound onto every instance by the shared machine (annotations only, so binding is not skipped)
    state: str
    may_trigger: Callable[..., bool]
    trigger: Callable[..., bool]

    def __init__(
        self,
        position_id: str,
        symbol: str,
        side: PositionSide,
        *,
        origin: Origin = Origin.STRATEGY,
        created_at: int = 0,
        intended_qty: Decimal = ZERO,
        entry_type: OrderType | None = None,
        entry_price: Decimal | None = None,
        planned_stop: Decimal | None = None,
        strategy: str = "",
        state: State = State.PENDING,
        version: int = 0,
        data: PositionData | None = None,
    ) -> None:
        self.id = position_id
        self.symbol = symbol
        self.side = side
        self.origin = origin
        self.created_at = created_at
        self.intended_qty = intended_qty
        self.entry_type = entry_type
        self.entry_price = entry_price
        self.planned_stop = planned_stop
        self.strategy = strategy
        self.version = version
        self.data = data if data is not None else PositionData()
        if state in TERMINAL:
            self.state = state.value
        else:
            MACHINE.add_model(self, initial=state.value)

    # ----------------------------------------------------------------- creation

    @classmethod
    def open(
        cls,
        position_id: str,
        symbol: str,
        side: PositionSide,
        qty: Decimal,
        *,
        at: int,
        entry_type: OrderType = OrderType.MARKET,
        entry_price: Decimal | None = None,
        planned_stop: Decimal | None = None,
        strategy: str = "",
    ) -> tuple[Position, Change]:
        """A new position in ``pending`` and its entry order, written ahead with status sending."""
        if qty <= 0:
            raise DomainError(f"position {position_id}: entry quantity must be positive")
        if entry_type is OrderType.LIMIT and entry_price is None:
            raise DomainError(f"position {position_id}: a limit entry needs a price")
        pos = cls(
            position_id,
            symbol,
            side,
            created_at=at,
            intended_qty=qty,
            entry_type=entry_type,
            entry_price=entry_price,
            planned_stop=planned_stop,
            strategy=strategy,
        )
        client_id = client_order_id(position_id, OrderRole.ENTRY, 1)
        order = Order(
            client_id=client_id,
            symbol=symbol,
            role=OrderRole.ENTRY,
            type=entry_type,
            side=side.entry_side,
            qty=qty,
            reduce_only=False,
            status=OrderStatus.SENDING,
            price=entry_price,
            position_id=position_id,
        )
        pos.data = PositionData(
            entry_working=True, attempts={OrderRole.ENTRY.value: 1}, updated_at=at
        )
        pos.version = 1
        change = Change(position_id, "opened", None, State.PENDING, 1, at, {}, (order,))
        return pos, change

    @classmethod
    def adopt(
        cls,
        position_id: str,
        symbol: str,
        side: PositionSide,
        qty: Decimal,
        price: Decimal,
        *,
        at: int,
    ) -> tuple[Position, Change]:
        """Take over an exposure found at the exchange that no managed position explains."""
        pos = cls(position_id, symbol, side, origin=Origin.ADOPTED, created_at=at, intended_qty=qty)
        record = FillRecord(f"adopt-{position_id}", OrderRole.ENTRY, qty, price, at)
        nxt = _with_entry(pos.data, record)
        change = pos._fire("adopted", nxt, at=at, detail={"qty": str(qty), "price": str(price)})
        return pos, change

    # ----------------------------------------------------------------- views

    @property
    def current(self) -> State:
        return State(self.state)

    @property
    def remaining(self) -> Decimal:
        return self.data.remaining

    @property
    def is_terminal(self) -> bool:
        return self.current in TERMINAL

    @property
    def entry_client_id(self) -> str:
        return client_order_id(self.id, OrderRole.ENTRY, 1)

    def tracks(self, client_id: str) -> bool:
        """True when ``client_id`` is an order this position still follows."""
        d = self.data
        live = {
            self.entry_client_id if d.entry_working else None,
            d.stop_pending.client_id if d.stop_pending else None,
            d.stop_resting.client_id if d.stop_resting else None,
            d.exit_client_id,
        }
        return client_id in live

    # ----------------------------------------------------------------- fills

    def apply_fill(self, fill: Fill, role: OrderRole, *, at: int) -> Change | None:
        """Apply an execution once (rule 2); a fill id already seen changes nothing."""
        if fill.fill_id in self.data.fill_ids:
            return None
        if fill.qty <= 0:
            raise DomainError(f"position {self.id}: fill {fill.fill_id} has no quantity")
        expected = self.side.exit_side if role.reduces else self.side.entry_side
        if fill.side is not expected:
            raise DomainError(
                f"position {self.id}: {role.value} fill {fill.fill_id} is a {fill.side.value}, "
                f"expected {expected.value}"
            )
        record = FillRecord(
            fill.fill_id, role, fill.qty, fill.price, fill.ts, fill.fee, fill.client_id
        )
        updates: tuple[OrderUpdate, ...] = ()
        if role is OrderRole.ENTRY:
            nxt = _with_entry(self.data, record)
            trigger = "entry_filled"
            entry_done = nxt.entry_working and nxt.entry_filled >= self.intended_qty
            if entry_done and fill.client_id == self.entry_client_id:
                nxt = replace(nxt, entry_working=False)
                updates = (OrderUpdate(fill.client_id, OrderStatus.FILLED),)
        else:
            nxt = _with_exit(self.data, record)
            trigger = "exit_filled"
        detail = {"fill_id": fill.fill_id, "qty": str(fill.qty), "price": str(fill.price)}
        return self._fire(
            trigger,
            replace(nxt, updated_at=at),
            at=at,
            detail=detail,
            updates=updates,
            fills=(record,),
        )

    # ----------------------------------------------------------------- entry order

    def on_entry_rejected(self, client_id: str, reason: str, *, at: int) -> Change:
        return self._entry_done("entry_rejected", client_id, OrderStatus.REJECTED, reason, at)

    def on_entry_cancelled(self, client_id: str, reason: str = "", *, at: int) -> Change:
        return self._entry_done("entry_cancelled", client_id, OrderStatus.CANCELLED, reason, at)

    def _entry_done(
        self, trigger: str, client_id: str, status: OrderStatus, reason: str, at: int
    ) -> Change:
        if client_id != self.entry_client_id or not self.data.entry_working:
            raise InvalidTransition(self.id, self.state, trigger, f"no working entry {client_id}")
        nxt = replace(self.data, entry_working=False, updated_at=at)
        if self.data.entry_filled == 0 and self.data.deferred_exits:
            nxt = replace(nxt, quarantine_reason="exit fills without an entry fill")
        return self._fire(
            trigger,
            nxt,
            at=at,
            detail={"reason": reason} if reason else {},
            updates=(OrderUpdate(client_id, status, reason=reason),),
        )

    # ----------------------------------------------------------------- stops

    def submit_stop(self, price: Decimal, *, at: int, qty: Decimal | None = None) -> Change:
        """Write a reduce-only stop ahead of sending it.

        The stop covers ``qty`` (default: all remaining exposure). A stop may only tighten against
        the one resting at the exchange (rule 4); with no resting stop any price is allowed, which
        is what the protection ladder needs after a venue-side cancel or a "would trigger
        immediately" reject. Only one stop is in flight at a time.
        """
        d = self.data
        size = d.remaining if qty is None else qty
        if d.remaining <= 0 or size <= 0 or size > d.remaining:
            raise InvalidTransition(
                self.id, self.state, "stop_submitted", f"stop size {size} vs exposure {d.remaining}"
            )
        if price <= 0:
            raise DomainError(f"position {self.id}: stop price must be positive")
        if d.stop_pending is not None:
            raise InvalidTransition(
                self.id, self.state, "stop_submitted", f"{d.stop_pending.client_id} in flight"
            )
        if d.stop_resting is not None and self._looser(price, d.stop_resting.price):
            raise StopLoosening(
                self.id,
                self.state,
                "stop_submitted",
                f"{price} is looser than the resting stop at {d.stop_resting.price}",
            )
        attempt = d.attempts.get(OrderRole.STOP.value, 0) + 1
        client_id = client_order_id(self.id, OrderRole.STOP, attempt)
        order = Order(
            client_id=client_id,
            symbol=self.symbol,
            role=OrderRole.STOP,
            type=OrderType.STOP,
            side=self.side.exit_side,
            qty=size,
            reduce_only=True,
            status=OrderStatus.SENDING,
            trigger_price=price,
            position_id=self.id,
        )
        nxt = replace(
            d,
            stop_pending=StopRef(client_id, price, size),
            attempts={**d.attempts, OrderRole.STOP.value: attempt},
            updated_at=at,
        )
        detail = {"client_id": client_id, "price": str(price), "qty": str(size)}
        return self._fire("stop_submitted", nxt, at=at, detail=detail, orders=(order,))

    def on_stop_acked(self, client_id: str, *, at: int, exchange_id: str | None = None) -> Change:
        """The in-flight stop rests at the exchange; a stop it replaces must now be cancelled
        (its client id is in ``detail["replaces"]``)."""
        d = self.data
        if d.stop_pending is None or d.stop_pending.client_id != client_id:
            raise InvalidTransition(self.id, self.state, "stop_acked", f"no stop {client_id}")
        replaced = d.stop_resting.client_id if d.stop_resting else None
        nxt = replace(d, stop_resting=d.stop_pending, stop_pending=None, updated_at=at)
        detail: dict[str, Any] = {"client_id": client_id, "price": str(d.stop_pending.price)}
        if replaced:
            detail["replaces"] = replaced
        update = OrderUpdate(client_id, OrderStatus.ACKED, exchange_id)
        return self._fire("stop_acked", nxt, at=at, detail=detail, updates=(update,))

    def on_stop_rejected(self, client_id: str, reason: str, *, at: int) -> Change:
        d = self.data
        if d.stop_pending is None or d.stop_pending.client_id != client_id:
            raise InvalidTransition(self.id, self.state, "stop_rejected", f"no stop {client_id}")
        nxt = replace(d, stop_pending=None, updated_at=at)
        update = OrderUpdate(client_id, OrderStatus.REJECTED, reason=reason)
        detail = {"client_id": client_id, "reason": reason}
        return self._fire("stop_rejected", nxt, at=at, detail=detail, updates=(update,))

    def on_stop_lost(self, client_id: str, reason: str, *, at: int) -> Change:
        """A stop of ours is gone without filling (venue-side cancel, expiry, found missing)."""
        d = self.data
        if d.stop_resting is not None and d.stop_resting.client_id == client_id:
            nxt = replace(d, stop_resting=None, updated_at=at)
        elif d.stop_pending is not None and d.stop_pending.client_id == client_id:
            nxt = replace(d, stop_pending=None, updated_at=at)
        else:
            raise InvalidTransition(self.id, self.state, "stop_lost", f"no stop {client_id}")
        update = OrderUpdate(client_id, OrderStatus.CANCELLED, reason=reason)
        detail = {"client_id": client_id, "reason": reason}
        return self._fire("stop_lost", nxt, at=at, detail=detail, updates=(update,))

    def on_stop_triggered(self, client_id: str, *, at: int) -> Change:
        """The resting stop fired: it is now the exit in flight, no longer a resting stop."""
        d = self.data
        if d.stop_resting is None or d.stop_resting.client_id != client_id:
            raise InvalidTransition(self.id, self.state, "stop_triggered", f"no stop {client_id}")
        nxt = replace(d, stop_resting=None, exit_client_id=client_id, updated_at=at)
        return self._fire("stop_triggered", nxt, at=at, detail={"client_id": client_id})

    def _looser(self, new: Decimal, old: Decimal) -> bool:
        return new < old if self.side is PositionSide.LONG else new > old

    # ----------------------------------------------------------------- take-profit and exit

    def submit_take_profit(self, price: Decimal, qty: Decimal, *, at: int) -> Change:
        d = self.data
        if qty <= 0 or qty > d.remaining:
            raise InvalidTransition(
                self.id, self.state, "tp_submitted", f"size {qty} vs exposure {d.remaining}"
            )
        attempt = d.attempts.get(OrderRole.TAKE_PROFIT.value, 0) + 1
        client_id = client_order_id(self.id, OrderRole.TAKE_PROFIT, attempt)
        order = Order(
            client_id=client_id,
            symbol=self.symbol,
            role=OrderRole.TAKE_PROFIT,
            type=OrderType.TAKE_PROFIT,
            side=self.side.exit_side,
            qty=qty,
            reduce_only=True,
            status=OrderStatus.SENDING,
            trigger_price=price,
            position_id=self.id,
        )
        nxt = replace(
            d, attempts={**d.attempts, OrderRole.TAKE_PROFIT.value: attempt}, updated_at=at
        )
        detail = {"client_id": client_id, "price": str(price), "qty": str(qty)}
        return self._fire("tp_submitted", nxt, at=at, detail=detail, orders=(order,))

    def request_exit(self, *, at: int, reason: str = "") -> Change:
        """Write ahead a reduce-only market order for all remaining exposure."""
        d = self.data
        if d.remaining <= 0:
            raise InvalidTransition(self.id, self.state, "exit_requested", "no exposure")
        attempt = d.attempts.get(OrderRole.EXIT.value, 0) + 1
        client_id = client_order_id(self.id, OrderRole.EXIT, attempt)
        order = Order(
            client_id=client_id,
            symbol=self.symbol,
            role=OrderRole.EXIT,
            type=OrderType.MARKET,
            side=self.side.exit_side,
            qty=d.remaining,
            reduce_only=True,
            status=OrderStatus.SENDING,
            position_id=self.id,
        )
        nxt = replace(
            d,
            exit_client_id=client_id,
            attempts={**d.attempts, OrderRole.EXIT.value: attempt},
            updated_at=at,
        )
        detail = {"client_id": client_id, "reason": reason}
        return self._fire("exit_requested", nxt, at=at, detail=detail, orders=(order,))

    def on_exit_failed(
        self,
        client_id: str,
        reason: str,
        *,
        at: int,
        status: OrderStatus = OrderStatus.REJECTED,
    ) -> Change:
        if self.data.exit_client_id != client_id:
            raise InvalidTransition(self.id, self.state, "exit_failed", f"no exit {client_id}")
        nxt = replace(self.data, exit_client_id=None, updated_at=at)
        update = OrderUpdate(client_id, status, reason=reason)
        detail = {"client_id": client_id, "reason": reason}
        return self._fire("exit_failed", nxt, at=at, detail=detail, updates=(update,))

    # ----------------------------------------------------------------- quarantine

    def quarantine(self, reason: str, *, at: int) -> Change:
        nxt = replace(self.data, quarantine_reason=reason, updated_at=at)
        return self._fire("quarantine_raised", nxt, at=at, detail={"reason": reason})

    def release(self, *, at: int) -> Change:
        nxt = replace(self.data, quarantine_reason="", updated_at=at)
        return self._fire("released", nxt, at=at)

    # ----------------------------------------------------------------- machine conditions

    def flat_after(self, nxt: PositionData) -> bool:
        return nxt.entry_filled > 0 and nxt.remaining == 0 and not nxt.deferred_exits

    def covered_after(self, nxt: PositionData) -> bool:
        stop = nxt.stop_resting
        return nxt.remaining > 0 and stop is not None and stop.qty == nxt.remaining

    def exposed_after(self, nxt: PositionData) -> bool:
        return nxt.remaining > 0

    def no_exposure_after(self, nxt: PositionData) -> bool:
        return nxt.remaining == 0

    def never_filled_after(self, nxt: PositionData) -> bool:
        return nxt.entry_filled == 0 and not nxt.deferred_exits

    # ----------------------------------------------------------------- firing

    def _fire(
        self,
        trigger: str,
        nxt: PositionData,
        *,
        at: int,
        detail: Mapping[str, Any] | None = None,
        orders: tuple[Order, ...] = (),
        updates: tuple[OrderUpdate, ...] = (),
        fills: tuple[FillRecord, ...] = (),
    ) -> Change:
        source = self.current
        if source in TERMINAL or not self.may_trigger(trigger, nxt=nxt):
            raise InvalidTransition(self.id, source.value, trigger)
        saved = (self.state, self.version, self.data)
        try:
            if not self.trigger(trigger, nxt=nxt):
                raise InvalidTransition(self.id, source.value, trigger)
        except BaseException:
            self.state, self.version, self.data = saved
            raise
        self.data = nxt
        self.version += 1
        dest = self.current
        if dest in TERMINAL:
            MACHINE.remove_model(self)
        return Change(
            self.id,
            trigger,
            source,
            dest,
            self.version,
            at,
            dict(detail or {}),
            orders,
            updates,
            fills,
        )

    def __repr__(self) -> str:
        return (
            f"Position({self.id} {self.symbol} {self.side.value} {self.state} "
            f"remaining={self.remaining} v{self.version})"
        )


def _with_entry(d: PositionData, record: FillRecord) -> PositionData:
    """Add an entry fill, then settle exit fills that were waiting for it, in arrival order."""
    nxt = replace(
        d,
        entry_filled=d.entry_filled + record.qty,
        entry_cost=d.entry_cost + record.qty * record.price,
        fees=d.fees + record.fee,
        fill_ids=d.fill_ids | {record.fill_id},
    )
    waiting, nxt = nxt.deferred_exits, replace(nxt, deferred_exits=())
    for held in waiting:
        nxt = _with_exit(nxt, held, already_seen=True)
    return nxt


def _with_exit(d: PositionData, record: FillRecord, *, already_seen: bool = False) -> PositionData:
    """Add an exit fill; one larger than the known exposure waits for its entry fills."""
    ids = d.fill_ids if already_seen else d.fill_ids | {record.fill_id}
    if record.qty > d.remaining:
        return replace(d, fill_ids=ids, deferred_exits=(*d.deferred_exits, record))
    nxt = replace(
        d,
        exit_filled=d.exit_filled + record.qty,
        exit_proceeds=d.exit_proceeds + record.qty * record.price,
        fees=d.fees + record.fee,
        fill_ids=ids,
    )
    if record.role is OrderRole.STOP:
        nxt = replace(
            nxt,
            stop_resting=_shrink(nxt.stop_resting, record),
            stop_pending=_shrink(nxt.stop_pending, record),
        )
    return nxt


def _shrink(stop: StopRef | None, record: FillRecord) -> StopRef | None:
    """A stop's open quantity after one of its own fills."""
    if stop is None or stop.client_id != record.client_id:
        return stop
    left = stop.qty - record.qty
    return replace(stop, qty=left) if left > 0 else None


def _build_machine() -> Machine:
    machine = Machine(
        model=None,
        states=[s.value for s in State],
        initial=None,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=False,
    )
    for rule in TRANSITIONS:
        machine.add_transition(
            rule.trigger,
            rule.source.value,
            rule.dest.value,
            conditions=list(rule.conditions),
        )
    return machine


MACHINE: Machine = _build_machine()
__all__ = ["MACHINE", "TRIGGERS", "Change", "FillRecord", "Position", "PositionData", "StopRef"]
