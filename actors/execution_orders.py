"""Orders of the execution core: sent after being written ahead, answers applied (ARCHITECTURE 3).

:class:`OrderDesk` is a part of :class:`actors.execution.ExecutionCore` (one per core, on its
thread) and works through the core's public methods. Every order it sends was first written to
the order journal with status ``sending`` by the position event that made it (rule 1). The
answer moves the journal and the position: acked, rejected (the position reacts: an entry is
cancelled, a stop is left to the ladder, a refused ordinary close backs off), or ambiguous
(marked ``unknown`` and resolved by looking the client id up at the venue; never re-sent). An
order still not found after ``ambiguous_grace_s`` counts as refused (it may not be visible at
once). Orders left ``sending``/``unknown`` by a crash start out unresolved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from actors.execution_stops import URGENT
from actors.messages import Outcome
from domain.errors import AmbiguousOutcome, PrecisionError, Rejected, Temporary
from domain.models import Order, OrderRole, OrderStatus, OrderUpdate
from domain.position import Change, Position, parse_client_order_id

if TYPE_CHECKING:
    from actors.execution import ExecutionCore

log = structlog.get_logger(__name__)


class OrderDesk:
    """Sends, resolves and cancels the orders of one :class:`ExecutionCore` (module docstring)."""

    def __init__(self, core: ExecutionCore, *, monotonic: Callable[[], float]) -> None:
        self.core = core
        self._monotonic = monotonic
        statuses = {OrderStatus.SENDING, OrderStatus.UNKNOWN}
        self._unresolved: set[str] = {o.client_id for o in core.store.orders(statuses=statuses)}
        self._unknown_since: dict[str, tuple[float, int]] = {}  # first miss: wall s, venue ms

    def submit(
        self,
        pos: Position,
        event: Callable[[], Change | None],
        now: int,
        *,
        trigger_signal: str | None = None,
    ) -> Change | None:
        """Apply an event that writes an order ahead (``ExecutionCore.apply_event``), then send
        that order (with ``trigger_signal``, when given); None when the position refused it."""
        change = self.core.apply_event(pos, event, now)
        if change is not None:
            order = change.orders[0]
            if trigger_signal is not None:
                order = replace(order, trigger_signal=trigger_signal)
            self.send(pos, order, now)
        return change

    def send(self, pos: Position, order: Order, now: int) -> None:
        """Send an order already written ahead, and apply the venue's answer."""
        try:
            placed = self.core.port.place_order(order)
        except (Rejected, PrecisionError) as err:
            self._rejected(pos, order, getattr(err, "reason", "") or str(err), now)
        except AmbiguousOutcome as err:
            self.core.store.update_order(
                OrderUpdate(order.client_id, OrderStatus.UNKNOWN, reason=str(err)), at=now
            )
            log.warning("order_outcome_unknown", client_id=order.client_id, error=str(err))
            self.resolve(order.client_id, now)
            if order.client_id in self._unresolved:
                self.core.stops.report(order, Outcome.UNKNOWN, str(err), now)
        except Temporary as err:  # refused before the venue acted (rate limit, nonce)
            self._rejected(pos, order, f"temporary: {err}", now)
        else:
            self._accepted(pos, order, placed, now)

    def _accepted(self, pos: Position, order: Order, placed: Order, now: int) -> None:
        if order.role is OrderRole.STOP:
            self.core.stops.acked(pos, order, placed, now)
            return
        update = OrderUpdate(order.client_id, OrderStatus.ACKED, placed.exchange_id)
        self.core.store.update_order(update, at=now)
        self.core.stops.report(order, Outcome.ACKED, "", now)

    def _rejected(self, pos: Position, order: Order, reason: str, now: int) -> None:
        log.warning(
            "order_rejected", client_id=order.client_id, role=order.role.value, reason=reason
        )
        core = self.core
        cid = order.client_id
        if order.role is OrderRole.ENTRY:
            core.apply_event(pos, lambda: pos.on_entry_rejected(cid, reason, at=now), now)
        elif order.role is OrderRole.STOP:
            core.stops.refused(pos, order, reason, now)
        elif order.role is OrderRole.EXIT:
            core.track(pos.id).exit_refused(now, core.params)
            core.apply_event(pos, lambda: pos.on_exit_failed(cid, reason, at=now), now)
            core.stops.report(order, Outcome.REJECTED, reason, now)
        else:
            core.store.update_order(OrderUpdate(cid, OrderStatus.REJECTED, reason=reason), at=now)

    # ------------------------------------------------------------------ resolving

    def unresolved(self) -> tuple[str, ...]:
        """Client ids of journaled orders whose outcome is not known yet, sorted."""
        return tuple(sorted(self._unresolved))

    def resolve_all(self, now: int) -> None:
        """Ask the venue about every unresolved order (:meth:`unresolved`)."""
        for client_id in self.unresolved():
            self.resolve(client_id, now)

    def resolve(self, client_id: str, now: int) -> None:
        """Settle an order whose send had no clear answer, by asking the venue."""
        core = self.core
        parsed = parse_client_order_id(client_id)
        pos = core.position_by_id(parsed[0]) if parsed else None
        if pos is None or parsed is None:
            self._unresolved.discard(client_id)
            return
        role = parsed[1]
        try:
            found = core.port.order_by_client_id(pos.symbol, client_id, urgent=role in URGENT)
        except (Temporary, AmbiguousOutcome) as err:
            self._unresolved.add(client_id)
            log.warning("order_unresolved", client_id=client_id, error=str(err))
            return
        self._unresolved.discard(client_id)
        journaled = core.store.orders(client_id=client_id)
        if not journaled:
            return
        order = journaled[0]
        if found is None:
            first, first_ms = self._unknown_since.setdefault(client_id, (self._monotonic(), now))
            grace = core.params.ambiguous_grace_s
            # waited out on the wall clock or on the venue's, whichever runs faster (a
            # simulated venue at 120x must not outwait the ladder's venue-time timeouts)
            if self._monotonic() - first < grace and now - first_ms < grace * 1000:
                self._unresolved.add(client_id)  # maybe not visible yet: ask again next tick
                return
        self._unknown_since.pop(client_id, None)
        if found is None or found.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            if pos.tracks(client_id):
                self._rejected(pos, order, "not working at the venue after an unclear send", now)
            else:
                status = found.status if found else OrderStatus.REJECTED
                core.store.update_order(OrderUpdate(client_id, status), at=now)
        elif pos.tracks(client_id) or order.role is OrderRole.TAKE_PROFIT:
            self._accepted(pos, order, found, now)

    # ------------------------------------------------------------------ cancelling

    def cancel(
        self, symbol: str, client_id: str, now: int, *, urgent: bool = False
    ) -> Order | None:
        """Cancel a journaled order, by its exchange id when there is one (no look-up round
        trips); the cancelled order, or None when it was not open (or the cancel failed)."""
        store = self.core.store
        exchange_id = store.exchange_id(client_id)
        port = self.core.port
        try:
            if exchange_id is not None:
                cancelled = port.cancel_order(symbol, exchange_id=exchange_id, urgent=urgent)
            else:
                cancelled = port.cancel_order(symbol, client_id=client_id, urgent=urgent)
        except (Temporary, AmbiguousOutcome, Rejected) as err:
            log.warning("cancel_failed", client_id=client_id, error=str(err))
            return None
        if cancelled is not None:
            store.update_order(OrderUpdate(client_id, OrderStatus.CANCELLED), at=now)
        return cancelled
