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
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from transitions import Event, Machine

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
from domain.position_data import (
    ZERO,
    Change,
    FillRecord,
    PositionData,
    StopRef,
    client_order_id,
    parse_client_order_id,
    with_entry,
    with_exit,
)
from domain.position_table import TERMINAL, TRANSITIONS, TRIGGERS, State


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
        planned_stop: Decimal | None = None,
    ) -> tuple[Position, Change]:
        """Take over an exposure found at the exchange that no managed position explains."""
        pos = cls(
            position_id,
            symbol,
            side,
            origin=Origin.ADOPTED,
            created_at=at,
            intended_qty=qty,
            planned_stop=planned_stop,
        )
        record = FillRecord(f"adopt-{position_id}", OrderRole.ENTRY, qty, price, at)
        nxt = with_entry(pos.data, record)
        change = pos._fire("adopted", nxt, at=at, detail={"qty": str(qty), "price": str(price)})
        return pos, change

    # ----------------------------------------------------------------- views

    @property
    def current(self) -> State:
        return _STATES[self.state]

    @property
    def remaining(self) -> Decimal:
        return self.data.remaining

    @property
    def is_terminal(self) -> bool:
        return self.current in TERMINAL

    @property
    def entry_client_id(self) -> str:
        return client_order_id(self.id, OrderRole.ENTRY, 1)

    def discard(self) -> None:
        """Forget this in-memory copy (after a failed commit, or when reloading from the store)."""
        if self in MACHINE.models:
            MACHINE.remove_model(self)

    def tracked(self) -> frozenset[str]:
        """The client ids of the orders this position still follows (take-profits aside)."""
        d = self.data
        live = {
            self.entry_client_id if d.entry_working else None,
            d.stop_pending.client_id if d.stop_pending else None,
            d.stop_resting.client_id if d.stop_resting else None,
            d.exit_client_id,
        }
        return frozenset(c for c in live if c)

    def tracks(self, client_id: str) -> bool:
        """True when ``client_id`` is an order this position still follows."""
        return client_id in self.tracked()

    # ----------------------------------------------------------------- fills

    def apply_fill(self, fill: Fill, role: OrderRole, *, at: int) -> Change | None:
        """Apply an execution once (rule 2); a fill id already seen changes nothing."""
        if fill.fill_id in self.data.fill_ids:
            return None
        if fill.qty <= 0:
            raise DomainError(f"position {self.id}: fill {fill.fill_id} has no quantity")
        if fill.symbol != self.symbol:
            raise DomainError(
                f"position {self.id}: fill {fill.fill_id} is for {fill.symbol}, not {self.symbol}"
            )
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
            nxt = with_entry(self.data, record)
            trigger = "entry_filled"
            entry_done = nxt.entry_working and nxt.entry_filled >= self.intended_qty
            if entry_done and fill.client_id == self.entry_client_id:
                nxt = replace(nxt, entry_working=False)
                updates = (OrderUpdate(fill.client_id, OrderStatus.FILLED),)
        else:
            nxt = with_exit(self.data, record)
            trigger = "exit_filled"
        if self.unbalanced_after(nxt):
            nxt = replace(nxt, quarantine_reason="exit fills exceed the known entry fills")
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
        order, attempts = self._write_ahead(OrderRole.STOP, OrderType.STOP, size, price)
        client_id = order.client_id
        nxt = replace(
            d, stop_pending=StopRef(client_id, price, size), attempts=attempts, updated_at=at
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
        order, attempts = self._write_ahead(
            OrderRole.TAKE_PROFIT, OrderType.TAKE_PROFIT, qty, price
        )
        nxt = replace(d, attempts=attempts, updated_at=at)
        detail = {"client_id": order.client_id, "price": str(price), "qty": str(qty)}
        return self._fire("tp_submitted", nxt, at=at, detail=detail, orders=(order,))

    def request_exit(self, *, at: int, reason: str = "") -> Change:
        """Write ahead a reduce-only market order for all remaining exposure."""
        d = self.data
        if d.remaining <= 0:
            raise InvalidTransition(self.id, self.state, "exit_requested", "no exposure")
        order, attempts = self._write_ahead(OrderRole.EXIT, OrderType.MARKET, d.remaining)
        nxt = replace(d, exit_client_id=order.client_id, attempts=attempts, updated_at=at)
        detail = {"client_id": order.client_id, "reason": reason}
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

    def _write_ahead(
        self, role: OrderRole, order_type: OrderType, qty: Decimal, trigger: Decimal | None = None
    ) -> tuple[Order, dict[str, int]]:
        """The next reduce-only order of ``role``, with status sending, and the new attempts."""
        attempt = self.data.attempts.get(role.value, 0) + 1
        order = Order(
            client_id=client_order_id(self.id, role, attempt),
            symbol=self.symbol,
            role=role,
            type=order_type,
            side=self.side.exit_side,
            qty=qty,
            reduce_only=True,
            status=OrderStatus.SENDING,
            trigger_price=trigger,
            position_id=self.id,
        )
        return order, {**self.data.attempts, role.value: attempt}

    # ----------------------------------------------------------------- quarantine

    def quarantine(self, reason: str, *, at: int) -> Change:
        nxt = replace(self.data, quarantine_reason=reason, updated_at=at)
        return self._fire("quarantine_raised", nxt, at=at, detail={"reason": reason})

    def release(self, *, at: int) -> Change:
        nxt = replace(self.data, quarantine_reason="", updated_at=at)
        return self._fire("released", nxt, at=at)

    # ----------------------------------------------------------------- machine conditions

    def flat_after(self, nxt: PositionData) -> bool:
        """Over: filled, closed again, and no entry order left that could add to it."""
        return self._flat(nxt) and not nxt.entry_working

    def flat_entry_working_after(self, nxt: PositionData) -> bool:
        return self._flat(nxt) and nxt.entry_working

    @staticmethod
    def _flat(nxt: PositionData) -> bool:
        return nxt.entry_filled > 0 and nxt.remaining == 0 and not nxt.deferred_exits

    def covered_after(self, nxt: PositionData) -> bool:
        stop = nxt.stop_resting
        return nxt.remaining > 0 and stop is not None and stop.qty == nxt.remaining

    def unbalanced_after(self, nxt: PositionData) -> bool:
        return nxt.entry_filled > 0 and nxt.remaining == 0 and bool(nxt.deferred_exits)

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
        # ``trigger`` runs the machine's first transition whose conditions hold and returns
        # False when none does, so asking ``may_trigger`` first would only evaluate the same
        # (pure) conditions twice; a trigger with no transition from this state is refused here
        # as ``may_trigger`` refused it (the machine would raise its own error instead)
        event = MACHINE.events.get(trigger)
        if source in TERMINAL or event is None or source.value not in event.transitions:
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


class PositionEvent(Event):  # type: ignore[misc]
    """A trigger of the position machine, taken as the library takes it: the first transition
    from the model's state whose conditions all give their targets wins, and moves the model
    to its destination; with none, the trigger answers False; from a state the trigger has no
    transition from, the library's own ``MachineError``.

    The library's ``Event.trigger`` also builds event data, queues the call and runs the
    prepare/before/after/enter/exit/finalize callbacks and exception handlers, about 15 us a
    trigger; the position machine registers none of them (:meth:`PositionMachine.plain`
    checks, and otherwise every trigger goes the library's way), so it is left out.
    """

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = self.machine
        if not machine.plain:
            return bool(super().trigger(model, *args, **kwargs))
        candidates = self.transitions.get(getattr(model, machine.model_attribute))
        if candidates is None:
            return bool(super().trigger(model, *args, **kwargs))  # raises MachineError
        for transition in candidates:
            for condition in transition.conditions:
                if getattr(model, condition.func)(*args, **kwargs) != condition.target:
                    break
            else:
                setattr(model, machine.model_attribute, transition.dest)
                return True
        return False


class PositionMachine(Machine):  # type: ignore[misc]
    """The shared machine, binding to each position only what a position uses.

    ``Machine.add_model`` also binds a method per trigger, a ``may_<trigger>`` per trigger and
    an ``is_<state>`` per state to every model, about forty partials a position; positions use
    none of them (their events call ``trigger(name)``; their state checks read ``current``),
    and no position method is named ``on_enter_<state>``/``on_exit_<state>`` for the machine to
    call. So a position gets ``trigger``, ``may_trigger`` and its state; the table, its
    conditions and the transitions themselves are the library's as before.
    """

    event_cls = PositionEvent
    _plain: bool | None = None

    @property
    def plain(self) -> bool:
        """True while nothing but states, transitions and model-method conditions is
        registered: no callbacks of any kind, no queue, no final state (what lets
        :class:`PositionEvent` take a trigger directly). Checked at the first trigger and
        again after any state or transition is added; the machine is built once, at import."""
        if self._plain is None:
            machine_callbacks = (
                self.prepare_event,
                self.before_state_change,
                self.after_state_change,
                self.finalize_event,
                self.on_exception,
                self.on_final,
            )
            states = self.states.values()
            transitions = [
                t for e in self.events.values() for ts in e.transitions.values() for t in ts
            ]
            self._plain = (
                not self.has_queue
                and not self.send_event
                and not any(machine_callbacks)
                and not any(s.on_enter or s.on_exit or s.final for s in states)
                and not any(t.prepare or t.before or t.after for t in transitions)
                and all(t.dest is not None for t in transitions)
                and all(
                    isinstance(c.func, str) and callable(getattr(Position, c.func, None))
                    for t in transitions
                    for c in t.conditions
                )
            )
        return self._plain

    def remove_model(self, model: Any) -> None:
        """Forget a position that reached a terminal state, and its bindings: they refer
        back to it, and without that cycle the position is freed as soon as nobody holds it."""
        super().remove_model(model)
        for mod in model if isinstance(model, list) else [model]:
            for name in ("trigger", "may_trigger"):
                mod.__dict__.pop(name, None)

    def add_states(self, *args: Any, **kwargs: Any) -> None:
        self._plain = None
        super().add_states(*args, **kwargs)

    def add_transition(self, *args: Any, **kwargs: Any) -> None:
        self._plain = None
        super().add_transition(*args, **kwargs)

    def add_model(self, model: Any, initial: str | None = None) -> None:
        for mod in model if isinstance(model, list) else [model]:
            if mod in self.models:
                continue
            if _state_callbacks(type(mod), tuple(self.states)):
                super().add_model(mod, initial)  # the library binds those (plain is then False)
                self._plain = None
                continue
            mod.trigger = partial(self._get_trigger, mod)
            mod.may_trigger = partial(self._can_trigger, mod)
            self.set_state(self.initial if initial is None else initial, model=mod)
            self.models.append(mod)


@lru_cache(maxsize=16)
def _state_callbacks(cls: type, states: tuple[str, ...]) -> bool:
    """Whether ``cls`` has methods the library would call on entering or leaving a state."""
    return any(hasattr(cls, f"on_{when}_{state}") for state in states for when in ("enter", "exit"))


def _build_machine() -> Machine:
    machine = PositionMachine(
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
_STATES: dict[str, State] = {s.value: s for s in State}  # a position's state, by its name
__all__ = [
    "MACHINE",
    "TRIGGERS",
    "Change",
    "FillRecord",
    "Position",
    "PositionData",
    "StopRef",
    "client_order_id",
    "parse_client_order_id",
]
