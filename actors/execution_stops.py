"""Stops of the execution core: placed, checked, reported to the ladder (ARCHITECTURE 3, 4).

:class:`StopKeeper` is a part of :class:`actors.execution.ExecutionCore` (one per core, on its
thread) and works through the core's public methods; its per-position memory (ladder ownership,
the price of a lost stop, when exposure appeared) lives in the core's ``PositionTrack``.

A stop goes out as soon as any quantity is exposed and is re-sized, at the same price, after
further fills. Once a stop attempt of a position has failed, the keeper places no further stop
for it on its own: the protection ladder (:mod:`actors.ladder`) decides every retry, variant,
flatten and quarantine, and the core carries out its commands (``EnsureStop`` here,
``Flatten(force=True)`` and ``Quarantine`` in the core), at most one order per command. Every
stop and exit attempt is reported back to the ladder as an ``OrderOutcome``.

The price of a new stop: that of the resting stop, else that of a stop the venue dropped, else
the planned one, else (an adopted position without a plan) ``adopted_stop_distance_frac`` beyond
the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from actors.core import PROTECTION
from actors.messages import EnsureStop, OrderOutcome, Outcome
from domain.errors import AmbiguousOutcome, Temporary
from domain.models import Order, OrderRole, OrderStatus
from domain.position import Position
from domain.position_table import EXPOSED, State
from domain.reconcile import adopted_stop_price

if TYPE_CHECKING:
    from actors.execution import ExecutionCore

log = structlog.get_logger(__name__)
# stop and exit orders: urgent at the venue (never behind a slow request), and the ladder counts
# on their outcomes
URGENT = frozenset({OrderRole.STOP, OrderRole.EXIT})


class StopKeeper:
    """Places, checks and reports the stops of one :class:`ExecutionCore` (module docstring)."""

    def __init__(
        self,
        core: ExecutionCore,
        *,
        on_latency: Callable[[float], None] | None = None,
        monotonic: Callable[[], float],
    ) -> None:
        self.core = core
        # seconds from applying a fill that exposes a position to the venue acknowledging its stop
        self._on_latency = on_latency
        self._monotonic = monotonic

    def protect(
        self,
        pos: Position,
        now: int,
        *,
        force: bool = False,
        trigger_signal: str | None = None,
        price: Decimal | None = None,
    ) -> None:
        """Place a stop for all exposure, unless one is in flight or one covering it rests.

        Unforced (exposure appeared, a re-size, a tick) only while no stop of the position has
        failed; after that only forced calls (the ladder's commands, reconciliation) place one,
        also for a quarantined position (a stop on a naked one only makes it safer).
        A forced call always answers with an ``OrderOutcome``, also when nothing was sent.
        ``price`` (put on the grid here) and ``trigger_signal`` are the ladder's variants.
        """
        d = pos.data
        skip: tuple[Outcome, str] | None = None
        if d.stop_pending is not None:
            skip = Outcome.IN_FLIGHT, f"stop {d.stop_pending.client_id} is unresolved"
        elif pos.current is State.EXITING:
            skip = Outcome.SKIPPED, "an exit is in flight"
        elif pos.current not in EXPOSED and not (force and pos.current is State.QUARANTINED):
            skip = Outcome.SKIPPED, f"position is {pos.state}"
        elif d.stop_resting is not None and d.stop_resting.qty == d.remaining:
            skip = Outcome.SKIPPED, "a stop covering the position rests at the venue"
        if skip is None and not force and self.core.track(pos.id).ladder_owned:
            return  # a stop failed: the protection ladder decides the next attempt
        if skip is None:
            inst = self.core.instruments[pos.symbol]
            stop = self.price_for(pos) if price is None else inst.stop_price(price, pos.side)
            change = self.core.orders.submit(
                pos, lambda: pos.submit_stop(stop, at=now), now, trigger_signal=trigger_signal
            )
            if change is not None:
                return
            skip = Outcome.SKIPPED, f"the position refused a stop at {stop}"
        if skip[0] is Outcome.SKIPPED:
            self.core.track(pos.id).ladder_owned = False  # nothing for the ladder to drive
        if force:
            self.tell(OrderOutcome(pos.symbol, pos.id, OrderRole.STOP, "", *skip, now))

    def ensure(self, command: EnsureStop, now: int) -> None:
        """The ladder asks for a stop: check the one we believe rests (a venue-side cancel is
        found here), then place one of the variant asked for unless a correct one works."""
        pos = self.core.registry.get(command.symbol)
        if pos is None:
            skip = Outcome.SKIPPED, "not managed"
            self.tell(OrderOutcome(command.symbol, "", OrderRole.STOP, "", *skip, now))
            return
        log.warning(
            "stop_requested",
            symbol=pos.symbol,
            position_id=pos.id,
            reason=command.reason,
            variant=command.variant.value,
            trigger_signal=command.trigger_signal,
            price=None if command.price is None else str(command.price),
        )
        self.core.track(pos.id).ladder_owned = True  # a lost stop is re-placed as the ladder asks
        self.verify(pos, now)
        self.protect(
            pos, now, force=True, trigger_signal=command.trigger_signal, price=command.price
        )

    def verify(self, pos: Position, now: int) -> None:
        """Ask the venue whether the stop we believe rests is still working."""
        stop = pos.data.stop_resting
        if stop is None:
            return
        try:
            found = self.core.port.order_by_client_id(pos.symbol, stop.client_id, urgent=True)
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("stop_check_failed", position_id=pos.id, error=str(err))
            return
        if found is not None and found.status is OrderStatus.FILLED:
            self.core.poll_fills(now)  # it fired: the exit fills settle the position
        elif found is None or found.status is not OrderStatus.ACKED:
            log.error("stop_lost", position_id=pos.id, client_id=stop.client_id)
            self.forget(pos, stop.client_id, "not working at the venue", now)

    def forget(self, pos: Position, client_id: str, reason: str, now: int) -> None:
        """The resting stop is gone at the venue: remember its price (the next stop is placed
        there) and record the loss (the position becomes unprotected and reacts)."""
        stop = pos.data.stop_resting
        if stop is not None:
            self.core.track(pos.id).last_stop = stop.price
        self.core.apply_event(pos, lambda: pos.on_stop_lost(client_id, reason, at=now), now)

    def price_for(self, pos: Position) -> Decimal:
        """The price a new stop of ``pos`` goes at (module docstring)."""
        d = pos.data
        inst = self.core.instruments[pos.symbol]
        if d.stop_resting is not None:
            return d.stop_resting.price
        last = self.core.track(pos.id).last_stop
        if last is not None:
            return last
        if pos.planned_stop is not None:
            return pos.planned_stop
        entry = d.avg_entry_price or Decimal(1)
        frac = self.core.params.adopted_stop_distance_frac
        return adopted_stop_price(pos.side, entry, None, frac, inst)

    def acked(self, pos: Position, order: Order, placed: Order, now: int) -> None:
        """The venue took a stop: record it, hand the position back from the ladder, measure
        the protection latency and cancel the stop it replaces."""
        acked_at = self._monotonic()  # the venue's acknowledgement, before we record it
        change = self.core.apply_event(
            pos,
            lambda: pos.on_stop_acked(order.client_id, at=now, exchange_id=placed.exchange_id),
            now,
        )
        if change is None:
            return
        track = self.core.track(pos.id)
        track.ladder_owned = False
        self.report(order, Outcome.ACKED, "", now)
        exposed_at, track.exposed_at = track.exposed_at, None
        if exposed_at is not None and self._on_latency is not None:
            self._on_latency(acked_at - exposed_at)
        replaced = change.detail.get("replaces")
        if replaced:
            self.core.orders.cancel(pos.symbol, replaced, now, urgent=True)

    def refused(self, pos: Position, order: Order, reason: str, now: int) -> None:
        """The venue refused a stop: from now on the ladder decides the next attempt."""
        self.core.track(pos.id).ladder_owned = True
        cid = order.client_id
        self.core.apply_event(pos, lambda: pos.on_stop_rejected(cid, reason, at=now), now)
        self.report(order, Outcome.REJECTED, reason, now)

    def report(self, order: Order, outcome: Outcome, reason: str, now: int) -> None:
        """Report how a stop or exit attempt went (other orders are not the ladder's)."""
        if order.role in URGENT:
            self.tell(OrderOutcome.of(order, outcome, reason, now))

    def tell(self, outcome: OrderOutcome) -> None:
        """Tell protection how a stop or exit attempt went: its ladder counts on it."""
        self.core.emit(outcome, PROTECTION)
