"""Execution: owns the position registry and the order journal (ARCHITECTURE 2 and 3).

Every order is written ahead (committed with status ``sending``) before it is sent. The answer
moves the journal and the position: acked, rejected (the position reacts), or ambiguous (marked
``unknown`` and resolved by looking the client id up; never re-sent). A stop goes out as soon as
any quantity is exposed and is re-sized, at the same price, after further fills. Once a stop
attempt of a position has failed, execution places no further stop for it on its own: the
protection ladder (:mod:`actors.ladder`) decides every retry, variant, flatten and quarantine,
and execution carries out its commands (``EnsureStop``, ``Flatten(force=True)``,
``Quarantine``), at most one order per command, reporting every stop and exit attempt back as
an ``OrderOutcome``. Ordinary closes keep their own back-off and are quarantined after
``max_exit_attempts`` refusals. On a terminal state, the position's leftover stop and
take-profits are cancelled.

Fills are polled from the venue (``Tick``) with an overlap window and applied idempotently by
fill id; the poll cursor is persisted. Orders left ``sending``/``unknown`` by a crash are
resolved on the first tick.

The core is synchronous; :class:`actors.runtime` runs it in a pykka actor, a backtest calls it
directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog

from actors.core import ALLOCATOR, PROTECTION, RISK, Outbox
from actors.messages import (
    AccountEquity,
    CloseRequested,
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OrderOutcome,
    Outcome,
    PlaceIntent,
    PositionChanged,
    PositionView,
    Quarantine,
    StopEntries,
    Tick,
    TradeClosed,
)
from actors.reconciler import READY, Reconciler
from domain.errors import (
    AmbiguousOutcome,
    DomainError,
    PrecisionError,
    Rejected,
    SymbolHasLivePosition,
    Temporary,
)
from domain.models import (
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderUpdate,
    PositionSide,
)
from domain.ports import ExchangePort
from domain.position import Change, Position, parse_client_order_id
from domain.position_table import EXPOSED, State
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
URGENT = frozenset({OrderRole.STOP, OrderRole.EXIT})
LISTENERS = (ALLOCATOR, RISK, PROTECTION)
FILL_OVERLAP_MS = 60_000
FILL_CURSOR = "fill_cursor_ms"
EQUITY_EVERY_MS = 30_000


@dataclass(frozen=True, slots=True)
class ExecutionParams:
    latched_on_start: bool = False  # the kill switch, when no latch was ever persisted
    exit_retry_initial_ms: int = 500  # back-off of ordinary closes (the ladder paces its own)
    exit_retry_max_ms: int = 10_000
    max_exit_attempts: int = 3  # then the position is quarantined for an operator
    ambiguous_grace_s: float = 5.0  # an unclear order not found at the venue is only
    # counted as refused after this long (it may not be visible yet)
    adopted_stop_distance_frac: Decimal = Decimal("0.02")
    recheck_after_s: float = 1.0  # until ready: the next reconciliation pass
    reconcile_every_s: float = 60.0  # once ready: a pass catches what changed at the venue


@dataclass(slots=True)
class _StopRetry:
    failures: int = 0
    next_at: int = 0


class ExecutionCore:
    name = "execution"

    def __init__(
        self,
        port: ExchangePort,
        store: PositionStore,
        *,
        params: ExecutionParams | None = None,
        on_latency: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.port = port
        self.store = store
        self.params = params or ExecutionParams()
        self.instruments: Mapping[str, Instrument] = port.instruments()
        self.registry: dict[str, Position] = {p.symbol: p for p in store.load_active()}
        latch = store.get_value("kill_switch")  # the persisted latch wins over the default
        self.kill_latched = bool(latch["latched"]) if latch else self.params.latched_on_start
        self._targets: dict[str, tuple[tuple[Decimal, Decimal], ...]] = {}
        self._expiry: dict[str, int] = {}
        self._ladder_owned: set[str] = set()  # a stop failed: the protection ladder drives it
        self._exposed_at: dict[str, float] = {}
        self._last_stop: dict[str, Decimal] = {}  # price of a stop the venue dropped
        self._exit_retry: dict[str, _StopRetry] = {}
        self._entry_end_pending: dict[str, tuple[Decimal, str]] = {}  # cancelled, fills awaited
        self._unknown_since: dict[str, float] = {}
        self.accepting = True  # False once shutdown began: no new entries
        # seconds from applying a fill that exposes a position to the venue acknowledging its stop
        self._on_latency = on_latency
        self._monotonic = monotonic
        statuses = {OrderStatus.SENDING, OrderStatus.UNKNOWN}
        self._unresolved: set[str] = {o.client_id for o in store.orders(statuses=statuses)}
        self._out: Outbox = []
        self._equity_at = -EQUITY_EVERY_MS  # report on the first tick
        # startup is crash recovery: no entry before a reconciliation pass said ready
        self.reconciler = Reconciler(self)
        self.ready = False
        self._reconciled_at: float | None = None

    # ------------------------------------------------------------------ dispatch

    def handle(self, message: object, now: int) -> Outbox:
        self._out = []
        match message:
            case PlaceIntent(intent=intent):
                self._open(intent, now)
            case Tick():
                self._tick(now)
            case EnsureStop() as command:
                self._ensure_stop(command, now)
            case CloseRequested(symbol=symbol, reason=reason):
                self._close(symbol, reason, now)
            case Flatten(symbol=symbol, reason=reason, force=force):
                for sym in [symbol] if symbol else list(self.registry):
                    self._close(sym, reason, now, force=force)
            case Quarantine(symbol=symbol, reason=reason):
                self._quarantine(symbol, reason, now)
            case KillSwitchChanged(latched=latched, reason=reason):
                self._kill(latched, reason, now)
            case StopEntries(reason=reason):
                self.accepting = False
                log.info("entries_stopped", reason=reason)
                self._tick(now)  # a last pass: apply fills, protect what is exposed
            case _:
                log.warning("message_ignored", actor=self.name, message=type(message).__name__)
        out, self._out = self._out, []
        return out

    def views(self) -> list[PositionView]:
        return [self._view(p) for p in self.registry.values()]

    # ------------------------------------------------------------------ opening

    def _open(self, intent: OrderIntent, now: int) -> None:
        if not self.accepting:
            log.warning("entry_refused", symbol=intent.symbol, reason="shutting_down")
            return
        if self.kill_latched:
            log.warning("entry_refused", symbol=intent.symbol, reason="kill_switch")
            return
        if not self.ready and not self.reconcile_pass(now):
            log.warning("entry_refused", symbol=intent.symbol, reason="reconciling")
            return
        if intent.symbol in self.registry:
            log.warning("entry_refused", symbol=intent.symbol, reason="symbol_busy")
            return
        inst = self.instruments[intent.symbol]
        try:
            qty = inst.order_qty(intent.qty)
            pos, change = Position.open(
                self.store.next_position_id(now),
                intent.symbol,
                intent.side,
                qty,
                at=now,
                entry_type=intent.entry_type,
                entry_price=intent.entry_price,
                planned_stop=inst.stop_price(intent.stop_price, intent.side),
                strategy=intent.strategy,
            )
            self.store.commit(pos, change)
        except (DomainError, SymbolHasLivePosition) as err:
            log.warning("entry_refused", symbol=intent.symbol, reason=str(err))
            return
        self.registry[pos.symbol] = pos
        self._targets[pos.id] = intent.take_profits
        if intent.expires_at:
            self._expiry[pos.id] = intent.expires_at
        self._announce(pos)
        log.info("position_opened", position_id=pos.id, symbol=pos.symbol, side=pos.side.value)
        self._send(pos, change.orders[0], now)
        if not pos.is_terminal:  # unless refused: a marketable entry fills at once, protect it
            self._poll_fills(now)

    # ------------------------------------------------------------------ sending

    def _send(self, pos: Position, order: Order, now: int) -> None:
        try:
            placed = self.port.place_order(order)
        except (Rejected, PrecisionError) as err:
            self._rejected(pos, order, getattr(err, "reason", "") or str(err), now)
        except AmbiguousOutcome as err:
            self.store.update_order(
                OrderUpdate(order.client_id, OrderStatus.UNKNOWN, reason=str(err)), at=now
            )
            log.warning("order_outcome_unknown", client_id=order.client_id, error=str(err))
            self._resolve(order.client_id, now)
            if order.client_id in self._unresolved:
                self._outcome(order, Outcome.UNKNOWN, str(err), now)
        except Temporary as err:  # refused before the venue acted (rate limit, nonce)
            self._rejected(pos, order, f"temporary: {err}", now)
        else:
            self._accepted(pos, order, placed, now)

    def _accepted(self, pos: Position, order: Order, placed: Order, now: int) -> None:
        if order.role is OrderRole.STOP:
            acked_at = self._monotonic()  # the venue's acknowledgement, before we record it
            change = self._apply(
                pos,
                lambda: pos.on_stop_acked(order.client_id, at=now, exchange_id=placed.exchange_id),
                now,
            )
            if change is not None:
                self._ladder_owned.discard(pos.id)
                self._outcome(order, Outcome.ACKED, "", now)
                exposed_at = self._exposed_at.pop(pos.id, None)
                if exposed_at is not None and self._on_latency is not None:
                    self._on_latency(acked_at - exposed_at)
                replaced = change.detail.get("replaces")
                if replaced:
                    self._cancel(pos.symbol, replaced, now, urgent=True)
            return
        update = OrderUpdate(order.client_id, OrderStatus.ACKED, placed.exchange_id)
        self.store.update_order(update, at=now)
        self._outcome(order, Outcome.ACKED, "", now)

    def _rejected(self, pos: Position, order: Order, reason: str, now: int) -> None:
        log.warning(
            "order_rejected", client_id=order.client_id, role=order.role.value, reason=reason
        )
        cid = order.client_id
        if order.role is OrderRole.ENTRY:
            self._apply(pos, lambda: pos.on_entry_rejected(cid, reason, at=now), now)
        elif order.role is OrderRole.STOP:
            self._ladder_owned.add(pos.id)
            self._apply(pos, lambda: pos.on_stop_rejected(cid, reason, at=now), now)
            self._outcome(order, Outcome.REJECTED, reason, now)
        elif order.role is OrderRole.EXIT:
            self._backoff(self._exit_retry, pos, now)
            self._apply(pos, lambda: pos.on_exit_failed(cid, reason, at=now), now)
            self._outcome(order, Outcome.REJECTED, reason, now)
        else:
            self.store.update_order(OrderUpdate(cid, OrderStatus.REJECTED, reason=reason), at=now)

    def _resolve(self, client_id: str, now: int) -> None:
        """Settle an order whose send had no clear answer, by asking the venue."""
        parsed = parse_client_order_id(client_id)
        pos = self._by_id(parsed[0]) if parsed else None
        if pos is None or parsed is None:
            self._unresolved.discard(client_id)
            return
        role = parsed[1]
        try:
            found = self.port.order_by_client_id(pos.symbol, client_id, urgent=role in URGENT)
        except (Temporary, AmbiguousOutcome) as err:
            self._unresolved.add(client_id)
            log.warning("order_unresolved", client_id=client_id, error=str(err))
            return
        self._unresolved.discard(client_id)
        journaled = self.store.orders(client_id=client_id)
        if not journaled:
            return
        order = journaled[0]
        if found is None:
            first = self._unknown_since.setdefault(client_id, self._monotonic())
            if self._monotonic() - first < self.params.ambiguous_grace_s:
                self._unresolved.add(client_id)  # maybe not visible yet: ask again next tick
                return
        self._unknown_since.pop(client_id, None)
        if found is None or found.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            if pos.tracks(client_id):
                self._rejected(pos, order, "not working at the venue after an unclear send", now)
            else:
                status = found.status if found else OrderStatus.REJECTED
                self.store.update_order(OrderUpdate(client_id, status), at=now)
        elif pos.tracks(client_id) or order.role is OrderRole.TAKE_PROFIT:
            self._accepted(pos, order, found, now)

    def _cancel(
        self, symbol: str, client_id: str, now: int, *, urgent: bool = False
    ) -> Order | None:
        """Cancel by the journaled exchange id when there is one (no look-up round trips)."""
        exchange_id = self.store.exchange_id(client_id)
        try:
            if exchange_id is not None:
                cancelled = self.port.cancel_order(symbol, exchange_id=exchange_id, urgent=urgent)
            else:
                cancelled = self.port.cancel_order(symbol, client_id=client_id, urgent=urgent)
        except (Temporary, AmbiguousOutcome, Rejected) as err:
            log.warning("cancel_failed", client_id=client_id, error=str(err))
            return None
        if cancelled is not None:
            self.store.update_order(OrderUpdate(client_id, OrderStatus.CANCELLED), at=now)
        return cancelled

    # ------------------------------------------------------------------ fills

    def _poll_fills(self, now: int) -> None:
        cursor = int(self.store.get_value(FILL_CURSOR, 0))
        try:
            fills = self.port.fills(since=max(0, cursor - FILL_OVERLAP_MS) if cursor else None)
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("fills_poll_failed", error=str(err))
            return
        for fill in fills:
            self._apply_fill(fill, now)
        if fills:
            newest = max(f.ts for f in fills)
            if newest > cursor:
                self.store.set_value(FILL_CURSOR, newest, at=now)

    def _apply_fill(self, fill: Fill, now: int) -> None:
        parsed = parse_client_order_id(fill.client_id) if fill.client_id else None
        if parsed is None:
            return  # not ours: reconciliation adopts foreign exposure
        pos = self._by_id(parsed[0])
        if pos is None:
            if fill.fill_id not in self.store.fill_ids(parsed[0]):
                log.warning(
                    "fill_for_unknown_position", fill_id=fill.fill_id, client_id=fill.client_id
                )
            return
        if pos.remaining == 0 and parsed[1] is OrderRole.ENTRY:
            self._exposed_at[pos.id] = self._monotonic()  # the stop follows inside _apply
        change = self._apply(pos, lambda: pos.apply_fill(fill, parsed[1], at=now), now)
        if change is None or pos.remaining == 0:
            self._exposed_at.pop(pos.id, None)

    # ------------------------------------------------------------------ reacting

    def _apply(self, pos: Position, event: Callable[[], Change | None], now: int) -> Change | None:
        """Apply an event, persist it, then react; a refused event is logged and changes nothing."""
        try:
            change = event()
        except DomainError as err:
            log.warning("event_refused", position_id=pos.id, error=str(err))
            return None
        if change is None:
            return None
        try:
            self.store.commit(pos, change)
        except BaseException:
            pos.discard()
            self.registry[pos.symbol] = self.store.load(pos.id)
            raise
        self._react(pos, now)
        return change

    def _react(self, pos: Position, now: int) -> None:
        self._announce(pos)
        state = pos.current
        if pos.is_terminal:
            self._finish(pos, now)
        elif state is State.UNPROTECTED and pos.data.stop_pending is None:
            self._protect(pos, now)
        elif state is State.PROTECTED:
            self._place_targets(pos, now)

    def _announce(self, pos: Position) -> None:
        changed = PositionChanged(self._view(pos))
        self._out.extend((name, changed) for name in LISTENERS)

    def _finish(self, pos: Position, now: int) -> None:
        self.registry.pop(pos.symbol, None)
        for key in (
            self._targets,
            self._expiry,
            self._exposed_at,
            self._last_stop,
            self._exit_retry,
            self._entry_end_pending,
        ):
            key.pop(pos.id, None)
        self._ladder_owned.discard(pos.id)
        for order in self.store.orders(position_id=pos.id, statuses={OrderStatus.ACKED}):
            self._cancel(pos.symbol, order.client_id, now)  # the rest of an entry included
        d = pos.data
        pnl = (d.exit_proceeds - d.entry_cost) * (1 if pos.side is PositionSide.LONG else -1)
        pnl -= d.fees
        risk = None
        if pos.planned_stop is not None and d.avg_entry_price is not None and d.entry_filled:
            risk = abs(d.avg_entry_price - pos.planned_stop) * d.entry_filled
        r_multiple = float(pnl / risk) if risk else None
        closed = TradeClosed(pos.id, pos.symbol, pnl, r_multiple, now)
        self._out.extend((name, closed) for name in (RISK, ALLOCATOR))
        log.info(
            "position_closed", position_id=pos.id, symbol=pos.symbol, state=pos.state, pnl=str(pnl)
        )

    def _protect(
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
        if skip is None and not force and pos.id in self._ladder_owned:
            return  # a stop failed: the protection ladder decides the next attempt
        if skip is None:
            inst = self.instruments[pos.symbol]
            stop = self._stop_price(pos) if price is None else inst.stop_price(price, pos.side)
            change = self._apply(pos, lambda: pos.submit_stop(stop, at=now), now)
            if change is not None:
                order = change.orders[0]
                if trigger_signal is not None:
                    order = replace(order, trigger_signal=trigger_signal)
                self._send(pos, order, now)
                return
            skip = Outcome.SKIPPED, f"the position refused a stop at {stop}"
        if skip[0] is Outcome.SKIPPED:
            self._ladder_owned.discard(pos.id)  # nothing for the ladder to drive
        if force:
            self._tell(OrderOutcome(pos.symbol, pos.id, OrderRole.STOP, "", *skip, now))

    def _ensure_stop(self, command: EnsureStop, now: int) -> None:
        """The ladder asks for a stop: check the one we believe rests (a venue-side cancel is
        found here), then place one of the variant asked for unless a correct one works."""
        pos = self.registry.get(command.symbol)
        if pos is None:
            skip = Outcome.SKIPPED, "not managed"
            self._tell(OrderOutcome(command.symbol, "", OrderRole.STOP, "", *skip, now))
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
        self._ladder_owned.add(pos.id)  # a stop found lost is re-placed as the ladder asks
        self._verify_stop(pos, now)
        self._protect(
            pos, now, force=True, trigger_signal=command.trigger_signal, price=command.price
        )

    def _quarantine(self, symbol: str, reason: str, now: int) -> None:
        pos = self.registry.get(symbol)
        if pos is None:
            log.warning("quarantine_ignored", symbol=symbol, reason=reason)
            return
        log.error("position_quarantine_requested", position_id=pos.id, reason=reason)
        self._apply(pos, lambda: pos.quarantine(reason, at=now), now)

    def _outcome(self, order: Order, outcome: Outcome, reason: str, now: int) -> None:
        if order.role in URGENT:
            self._tell(OrderOutcome.of(order, outcome, reason, now))

    def _tell(self, outcome: OrderOutcome) -> None:
        """Tell protection how a stop or exit attempt went: its ladder counts on it."""
        self._out.append((PROTECTION, outcome))

    def _verify_stop(self, pos: Position, now: int) -> None:
        """Ask the venue whether the stop we believe rests is still working."""
        stop = pos.data.stop_resting
        if stop is None:
            return
        try:
            found = self.port.order_by_client_id(pos.symbol, stop.client_id, urgent=True)
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("stop_check_failed", position_id=pos.id, error=str(err))
            return
        if found is not None and found.status is OrderStatus.FILLED:
            self._poll_fills(now)  # it fired: the exit fills settle the position
        elif found is None or found.status is not OrderStatus.ACKED:
            log.error("stop_lost", position_id=pos.id, client_id=stop.client_id)
            self._last_stop[pos.id] = stop.price
            cid = stop.client_id
            self._apply(pos, lambda: pos.on_stop_lost(cid, "not working at the venue", at=now), now)

    def _stop_price(self, pos: Position) -> Decimal:
        d = pos.data
        inst = self.instruments[pos.symbol]
        if d.stop_resting is not None:
            return d.stop_resting.price
        if pos.id in self._last_stop:
            return self._last_stop[pos.id]
        if pos.planned_stop is not None:
            return pos.planned_stop
        entry = d.avg_entry_price or Decimal(1)
        frac = self.params.adopted_stop_distance_frac
        raw = entry * (1 - frac) if pos.side is PositionSide.LONG else entry * (1 + frac)
        return inst.stop_price(raw, pos.side)

    def _backoff(self, table: dict[str, _StopRetry], pos: Position, now: int) -> None:
        retry = table.setdefault(pos.id, _StopRetry())
        retry.failures += 1
        wait = min(
            self.params.exit_retry_max_ms,
            self.params.exit_retry_initial_ms * 2 ** (retry.failures - 1),
        )
        retry.next_at = now + wait

    def _place_targets(self, pos: Position, now: int) -> None:
        targets = self._targets.pop(pos.id, ())
        for price, qty in targets:
            size = min(qty, pos.remaining)
            if size <= 0:
                break
            change = self._apply(
                pos, lambda p=price, s=size: pos.submit_take_profit(p, s, at=now), now
            )
            if change is not None:
                self._send(pos, change.orders[0], now)

    # ------------------------------------------------------------------ closing, kill switch

    def _close(self, symbol: str, reason: str, now: int, *, force: bool = False) -> None:
        """Exit all exposure with a reduce-only market order. ``force`` (the protection ladder,
        which paces and caps its own attempts): no back-off or attempt cap here, and an
        ``OrderOutcome`` answers even when nothing is sent."""
        pos = self.registry.get(symbol)
        skip = OrderOutcome(
            symbol, pos.id if pos else "", OrderRole.EXIT, "", Outcome.SKIPPED, "", now
        )
        if pos is None:
            if force:
                self._tell(replace(skip, reason="not managed"))
            return
        self._end_entry(pos, reason, now)
        if pos.is_terminal or pos.remaining <= 0 or pos.data.exit_client_id is not None:
            busy = pos.data.exit_client_id is not None and not pos.is_terminal
            if force and busy:
                self._tell(replace(skip, outcome=Outcome.IN_FLIGHT, reason="exit unresolved"))
            elif force:
                self._tell(replace(skip, reason="no exposure"))
            return
        retry = self._exit_retry.get(pos.id)
        if not force and retry is not None and now < retry.next_at:
            return  # an exit was just refused: wait, never loop
        if not force and retry is not None and retry.failures >= self.params.max_exit_attempts:
            log.error("exit_attempts_exhausted", position_id=pos.id, symbol=symbol)
            self._apply(pos, lambda: pos.quarantine("exit refused repeatedly", at=now), now)
            return
        change = self._apply(pos, lambda: pos.request_exit(at=now, reason=reason), now)
        if change is not None:
            self._send(pos, change.orders[0], now)
            self._poll_fills(now)
        elif force:
            self._tell(replace(skip, reason="the position refused the exit"))

    def _end_entry(self, pos: Position, reason: str, now: int) -> None:
        """Cancel a working entry; it only counts as ended once its fills are all applied."""
        if not pos.data.entry_working or pos.id in self._entry_end_pending:
            return
        cid = pos.entry_client_id
        ended = self._cancel(pos.symbol, cid, now)
        if ended is None:  # not open: filled or cancelled already; the venue says which
            try:
                ended = self.port.order_by_client_id(pos.symbol, cid)
            except (Temporary, AmbiguousOutcome):
                return
            if ended is None or ended.status is OrderStatus.ACKED:
                return
            if ended.status is OrderStatus.FILLED:
                self._poll_fills(now)
                return
        self._poll_fills(now)  # fills made before the cancel must be in first
        if ended.filled_qty > pos.data.entry_filled:
            self._entry_end_pending[pos.id] = (ended.filled_qty, reason)
            return
        self._finish_entry(pos, reason, now)

    def _settle_ended_entries(self, now: int) -> None:
        """Finish entries whose cancellation waited for fills the venue had not shown yet."""
        for pos in list(self.registry.values()):
            pending = self._entry_end_pending.get(pos.id)
            if pending is None or pos.data.entry_filled < pending[0]:
                continue
            del self._entry_end_pending[pos.id]
            if pos.data.entry_working:
                self._finish_entry(pos, pending[1], now)

    def _finish_entry(self, pos: Position, reason: str, now: int) -> None:
        cid = pos.entry_client_id
        self._apply(pos, lambda: pos.on_entry_cancelled(cid, reason, at=now), now)

    def _kill(self, latched: bool, reason: str, now: int) -> None:
        self.kill_latched = latched
        self.store.set_value(
            "kill_switch", {"latched": latched, "reason": reason, "at": now}, at=now
        )
        log.warning("kill_switch_changed", latched=latched, reason=reason)
        if not latched:
            return
        for pos in list(self.registry.values()):
            self._end_entry(pos, reason, now)
            for order in self.store.orders(position_id=pos.id, statuses={OrderStatus.ACKED}):
                if order.role is OrderRole.TAKE_PROFIT:
                    self._cancel(pos.symbol, order.client_id, now)
            self._targets.pop(pos.id, None)

    # ------------------------------------------------------------------ timer

    def reconcile_pass(self, now: int) -> bool:
        """A reconciliation pass; True once one said ready (entries may start)."""
        self._reconciled_at = self._monotonic()
        report = self.reconciler.run(now)
        if report.status == READY and not self.ready:
            log.info("reconciliation_ready", **report.summary())
        self.ready = self.ready or report.status == READY
        return self.ready

    def _reconcile_due(self) -> bool:
        if self._reconciled_at is None:
            return True
        every = self.params.reconcile_every_s if self.ready else self.params.recheck_after_s
        return self._monotonic() - self._reconciled_at >= every

    def _tick(self, now: int) -> None:
        if self._reconcile_due():
            self.reconcile_pass(now)
        if now - self._equity_at >= EQUITY_EVERY_MS:
            self._report_equity(now)
        for client_id in sorted(self._unresolved):
            self._resolve(client_id, now)
        self._poll_fills(now)
        self._settle_ended_entries(now)
        for pos in list(self.registry.values()):
            expiry = self._expiry.get(pos.id)
            if expiry is not None and now >= expiry and pos.data.entry_working:
                self._close(pos.symbol, "entry expired", now)
            elif pos.current is State.UNPROTECTED:
                self._protect(pos, now)

    def _report_equity(self, now: int) -> None:
        """Tell allocator and risk what the account holds (they size and cap from it)."""
        try:
            account = self.port.account()
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("account_read_failed", error=str(err))
            return
        self._equity_at = now
        reading = AccountEquity(account.equity, now, account.used_margin)
        self._out.extend((name, reading) for name in (ALLOCATOR, RISK))

    # ------------------------------------------------------------------ helpers

    def _by_id(self, position_id: str) -> Position | None:
        return next((p for p in self.registry.values() if p.id == position_id), None)

    def _view(self, pos: Position) -> PositionView:
        d = pos.data
        stop = d.stop_resting
        return PositionView(
            position_id=pos.id,
            symbol=pos.symbol,
            side=pos.side,
            state=pos.current,
            qty=d.remaining,
            entry_price=d.avg_entry_price,
            stop_price=stop.price if stop else None,
            stop_qty=stop.qty if stop else Decimal(0),
            strategy=pos.strategy,
            origin=pos.origin.value,
            created_at=pos.created_at,
            updated_at=d.updated_at,
        )
