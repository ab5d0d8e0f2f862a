"""Execution: owns the position registry and the order journal (ARCHITECTURE 2 and 3).

The core takes the pipeline's messages (``PlaceIntent``, ``Tick``, closes, the kill switch and
the protection ladder's ``EnsureStop``/``Flatten``/``Quarantine``) and drives the positions'
state machines. Three parts work for it on its thread, through its public methods:

- :class:`actors.execution_orders.OrderDesk` sends the orders written ahead and applies the
  venue's answers (an ambiguous one is resolved by client id, never re-sent);
- :class:`actors.execution_stops.StopKeeper` places, checks and re-sizes stops and reports every
  stop and exit attempt to the protection ladder;
- :class:`actors.reconciler.Reconciler` runs the reconciliation passes (no entry before one said
  ready, then one every ``reconcile_every_s``).

This module: opening (a marketable entry is protected at once); fills, polled on ``Tick`` with an
overlap window and applied idempotently by fill id, the cursor persisted; reacting to every
change (announce it, protect, place take-profits; on a terminal state cancel the leftover stop
and take-profits); closing (ordinary closes back off and are quarantined after
``max_exit_attempts`` refusals; the ladder paces its forced flattens itself); the kill switch;
paused symbols (no new entries, persisted); the timer. What the core knows of a live position
beside its state machine is one :class:`PositionTrack`, dropped when the position ends.

The core is synchronous; :class:`actors.runtime` runs it in a pykka actor, a backtest calls it
directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog

from actors.core import ALLOCATOR, HISTORY, PROTECTION, RISK, Outbox
from actors.execution_orders import OrderDesk
from actors.execution_stops import StopKeeper
from actors.messages import (
    AccountEquity,
    Audit,
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
    ReconcileSoon,
    StopEntries,
    Tick,
    TradeClosed,
)
from actors.reconciler import Reconciler
from domain.errors import AmbiguousOutcome, DomainError, SymbolHasLivePosition, Temporary
from domain.models import Fill, Instrument, OrderIntent, OrderRole, OrderStatus
from domain.ports import ExchangePort
from domain.position import Change, Position, parse_client_order_id
from domain.position_table import State
from persistence.history.models import EventKind
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
LISTENERS = (ALLOCATOR, RISK, PROTECTION)
FILL_OVERLAP_MS = 60_000
FILL_CURSOR = "fill_cursor_ms"
STORED_FILLS_KEPT = 256  # fill ids remembered as stored, beyond which old ones are dropped
EQUITY_EVERY_MS = 30_000  # the account is read this often, and at each minute's first tick
MINUTE_MS = 60_000
KILL_SWEEP_S = 5.0  # while the kill switch is latched, working entries are swept this often
PAUSED = "paused_symbols"  # store kv: the sorted list of symbols that take no new entries


@dataclass(frozen=True, slots=True)
class ExecutionParams:
    latched_on_start: bool = False  # the kill switch, when no latch was ever persisted
    exit_retry_initial_ms: int = 500  # back-off of ordinary closes (the ladder paces its own)
    exit_retry_max_ms: int = 10_000
    max_exit_attempts: int = 3  # then the position is quarantined for an operator
    ambiguous_grace_s: float = 5.0  # an unclear order not found at the venue is only
    # counted as refused after this long (it may not be visible yet)
    adopted_stop_distance_frac: Decimal = Decimal("0.02")
    recheck_after_s: float = 1.0  # until ready, or while a doubt waits: the next pass
    confirm_after_s: float = 3.0  # a difference is acted on when seen again this much later
    reconcile_every_s: float = 60.0  # once ready: a pass catches what changed at the venue


@dataclass(slots=True)
class PositionTrack:
    """The core's bookkeeping of one live position, beside its state machine (in memory only)."""

    targets: tuple[tuple[Decimal, Decimal], ...] = ()  # take-profits to place once protected
    expires_at: int | None = None  # a still-working entry is cancelled from then on
    exposed_at: float | None = None  # monotonic time exposure appeared, until its stop is acked
    last_stop: Decimal | None = None  # price of a stop the venue dropped
    ladder_owned: bool = False  # a stop failed: the protection ladder drives the next attempt
    entry_end: tuple[Decimal, str] | None = None  # entry cancelled (filled qty, reason), fills due
    exit_failures: int = 0  # ordinary closes refused so far
    exit_next_at: int = 0  # no ordinary close before then

    def exit_refused(self, now: int, params: ExecutionParams) -> None:
        self.exit_failures += 1
        wait = params.exit_retry_initial_ms * 2 ** (self.exit_failures - 1)
        self.exit_next_at = now + min(params.exit_retry_max_ms, wait)


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
        self._paused: frozenset[str] = frozenset(store.get_value(PAUSED, []))
        self._tracks: dict[str, PositionTrack] = {}  # by position id
        self.accepting = True  # False once shutdown began: no new entries
        self._monotonic = monotonic
        self.monotonic = monotonic  # seconds, for collaborators that time things
        # on_latency: seconds from applying a fill that exposes a position to its stop's ack
        self.stops = StopKeeper(self, on_latency=on_latency, monotonic=monotonic)
        self.orders = OrderDesk(self, monotonic=monotonic)
        self._out: Outbox = []
        self._equity_at = -EQUITY_EVERY_MS  # report on the first tick
        # startup is crash recovery: no entry before a reconciliation pass said ready
        self.reconciler = Reconciler(self)
        self._kill_swept_at = 0.0
        self._fill_cursor: int | None = None  # the persisted FILL_CURSOR (only this core sets it)
        # fill id -> (position id, fill ts) for fills the store holds for that position: applying
        # one again to the finished position is a silent no-op, so the store is not asked again;
        # entries older than the overlap window are dropped (the store is asked if one returns)
        self._stored_fills: dict[str, tuple[str, int]] = {}
        self._by_id: dict[str, Position] = {}  # registry positions found by id (checked on use)

    # ------------------------------------------------------------------ dispatch

    def handle(self, message: object, now: int) -> Outbox:
        with self.collecting() as out:
            match message:
                case PlaceIntent(intent=intent):
                    self._open(intent, now)
                case Tick():
                    self._tick(now)
                case EnsureStop() as command:
                    self.stops.ensure(command, now)
                case ReconcileSoon(symbol=symbol, reason=reason):
                    log.warning("reconciliation_requested", symbol=symbol, reason=reason)
                    self.reconciler.soon()
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
        return out

    @property
    def ready(self) -> bool:
        """True once a reconciliation pass said READY: entries may start."""
        return self.reconciler.ready

    def views(self) -> list[PositionView]:
        return [self._view(p) for p in self.registry.values()]

    @property
    def paused(self) -> frozenset[str]:
        """Symbols that take no new entries (their positions stay managed and protected)."""
        return self._paused

    def set_paused(self, symbol: str, paused: bool, *, by: str, now: int) -> bool:
        """Pause or unpause entries on ``symbol``, persisted at once; returns whether it was
        paused before. Idempotent."""
        was = symbol in self._paused
        if was != paused:
            self._paused = self._paused | {symbol} if paused else self._paused - {symbol}
            self.store.set_value(PAUSED, sorted(self._paused), at=now)
        event = "symbol_paused" if paused else "symbol_unpaused"
        log.warning(event, symbol=symbol, by=by, was_paused=was, paused=sorted(self._paused))
        return was

    def operator_close(self, symbol: str, reason: str, now: int) -> None:
        """An operator's close: the ``CloseRequested`` path, once, now. A person deciding to
        try again clears the back-off (and attempt count) earlier refused closes left."""
        pos = self.registry.get(symbol)
        if pos is not None and (track := self._tracks.get(pos.id)) is not None:
            track.exit_failures, track.exit_next_at = 0, 0
        self._close(symbol, reason, now)

    # ------------------------------------------------------------------ for collaborators

    @contextmanager
    def collecting(self, into: Outbox | None = None) -> Iterator[Outbox]:
        """Collect what the core tells other actors while the block runs (into ``into`` when
        given): ``handle`` returns it; the control layer wraps calls made outside ``handle``."""
        out: Outbox = [] if into is None else into
        self._out = out
        try:
            yield out
        finally:
            self._out = []

    def emit(self, message: object, *destinations: str) -> None:
        """Tell ``message`` to each of ``destinations`` (collected, see :meth:`collecting`)."""
        out = self._out
        for name in destinations:
            out.append((name, message))

    def position_by_id(self, position_id: str) -> Position | None:
        pos = self._by_id.get(position_id)  # remembered, and still the registry's
        if pos is not None and self.registry.get(pos.symbol) is pos:
            return pos
        for pos in self.registry.values():
            if pos.id == position_id:
                self._by_id[position_id] = pos
                return pos
        return None

    def track(self, position_id: str) -> PositionTrack:
        """The bookkeeping of a live position (made on first use, dropped when it ends)."""
        return self._tracks.setdefault(position_id, PositionTrack())

    def register(self, pos: Position, now: int) -> None:
        """Manage a position committed elsewhere (one reconciliation adopted): add it to the
        registry and react to its state (an exposed one is protected at once)."""
        self.registry[pos.symbol] = pos
        self._react(pos, now)

    # ------------------------------------------------------------------ opening

    def _open(self, intent: OrderIntent, now: int) -> None:
        if not self.accepting:
            log.warning("entry_refused", symbol=intent.symbol, reason="shutting_down")
            return
        if self.kill_latched:
            log.warning("entry_refused", symbol=intent.symbol, reason="kill_switch")
            return
        if intent.symbol in self._paused:
            log.warning("entry_refused", symbol=intent.symbol, reason="symbol_paused")
            payload = {"strategy": intent.strategy, "side": intent.side.value}
            self.emit(
                Audit(
                    EventKind.RISK_DECISION, "symbol_paused", now, intent.symbol, payload=payload
                ),
                HISTORY,
            )
            return
        if not self.ready and not self.reconciler.scheduled_pass(now):
            log.warning("entry_refused", symbol=intent.symbol, reason="reconciling")
            return
        if intent.symbol in self.registry:
            log.warning("entry_refused", symbol=intent.symbol, reason="symbol_busy")
            return
        if not self._venue_flat(intent.symbol):
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
        track = self.track(pos.id)
        track.targets = intent.take_profits
        track.expires_at = intent.expires_at or None
        self._announce(pos)
        log.info("position_opened", position_id=pos.id, symbol=pos.symbol, side=pos.side.value)
        self.orders.send(pos, change.orders[0], now)
        if not pos.is_terminal:  # unless refused: a marketable entry fills at once, protect it
            self.poll_fills(now)

    # ------------------------------------------------------------------ fills

    def _venue_flat(self, symbol: str) -> bool:
        """Rule 5 at the venue: no entry on a symbol holding exposure nobody manages (a manual
        trade not adopted yet); the entry would merge with it. Unreadable: no entry either."""
        try:
            held = [p for p in self.port.positions() if p.symbol == symbol and p.qty > 0]
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("entry_refused", symbol=symbol, reason=f"venue unreadable: {err}")
            return False
        if held:
            log.warning("entry_refused", symbol=symbol, reason="unmanaged exposure at the venue")
            self.reconciler.soon()
            return False
        return True

    def apply_venue_fills(
        self, now: int, apply: Callable[[Fill], int] | None = None, *, advance: bool = True
    ) -> int:
        """Hand every fill the venue reports since the persisted cursor (less an overlap) to
        ``apply`` (default: :meth:`apply_fill`), then move the cursor on unless ``advance`` is
        False; returns the sum of what ``apply`` returned. Raises ``Temporary`` or
        ``AmbiguousOutcome`` when the fills cannot be read: the caller decides what that means.
        """
        cursor = self._fill_cursor
        if cursor is None:
            cursor = self._fill_cursor = int(self.store.get_value(FILL_CURSOR, 0))
        since = max(0, cursor - FILL_OVERLAP_MS) if cursor else None
        fills = self.port.fills(since=since)
        take = apply or (lambda fill: self.apply_fill(fill, now))
        applied = sum(take(fill) for fill in fills)
        if fills and advance:
            newest = max(f.ts for f in fills)
            if newest > cursor:
                self.store.set_value(FILL_CURSOR, newest, at=now)
                self._fill_cursor = newest
        if since is not None and len(self._stored_fills) > STORED_FILLS_KEPT:
            kept = {f: v for f, v in self._stored_fills.items() if v[1] >= since}
            self._stored_fills = kept
        return applied

    def poll_fills(self, now: int) -> None:
        """Apply the venue's new fills; a failed read is logged and left for the next poll."""
        try:
            self.apply_venue_fills(now)
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("fills_poll_failed", error=str(err))

    def apply_fill(self, fill: Fill, now: int) -> bool:
        """Apply one venue fill to the position that placed its order; True when it moved it."""
        parsed = parse_client_order_id(fill.client_id) if fill.client_id else None
        if parsed is None:
            return False  # not ours: reconciliation adopts foreign exposure
        pos = self.position_by_id(parsed[0])
        if pos is None:
            if not self._fill_stored(parsed[0], fill):
                log.warning(
                    "fill_for_unknown_position", fill_id=fill.fill_id, client_id=fill.client_id
                )
            return False
        if pos.remaining == 0 and parsed[1] is OrderRole.ENTRY:
            self.track(pos.id).exposed_at = self._monotonic()  # the stop follows in apply_event
        change = self.apply_event(pos, lambda: pos.apply_fill(fill, parsed[1], at=now), now)
        if (change is None or pos.remaining == 0) and (track := self._tracks.get(pos.id)):
            track.exposed_at = None
        if change is not None and change.fills:  # committed with the position: in the store
            for record in change.fills:
                self._stored_fills[record.fill_id] = (pos.id, record.ts)
        return change is not None

    def _fill_stored(self, position_id: str, fill: Fill) -> bool:
        """Whether the store holds ``fill`` for ``position_id`` (fills rows are never removed
        and a fill id is unique, so a yes is remembered: :attr:`_stored_fills`)."""
        known = self._stored_fills.get(fill.fill_id)
        if known is not None and known[0] == position_id:
            return True
        if fill.fill_id not in self.store.fill_ids(position_id):
            return False
        self._stored_fills[fill.fill_id] = (position_id, fill.ts)
        return True

    # ------------------------------------------------------------------ reacting

    def apply_event(
        self, pos: Position, event: Callable[[], Change | None], now: int
    ) -> Change | None:
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
            self.stops.protect(pos, now)
        elif state is State.PROTECTED:
            self._place_targets(pos, now)
        elif state is State.PENDING and pos.data.exit_filled > 0:
            self.end_entry(pos, "closed by its exits: the rest of the entry is cancelled", now)

    def _announce(self, pos: Position) -> None:
        self.emit(PositionChanged(self._view(pos)), *LISTENERS)

    def _finish(self, pos: Position, now: int) -> None:
        self.registry.pop(pos.symbol, None)
        self._by_id.pop(pos.id, None)
        self._tracks.pop(pos.id, None)
        for client_id in self.store.client_ids(position_id=pos.id, statuses={OrderStatus.ACKED}):
            self.orders.cancel(pos.symbol, client_id, now)  # the rest of an entry included
        closed = TradeClosed.of(pos, now)
        self.emit(closed, RISK, ALLOCATOR)
        pnl = str(closed.pnl)
        log.info("position_closed", position_id=pos.id, symbol=pos.symbol, state=pos.state, pnl=pnl)

    def _place_targets(self, pos: Position, now: int) -> None:
        track = self._tracks.get(pos.id)
        if track is None:
            return
        targets, track.targets = track.targets, ()
        for price, qty in targets:
            size = min(qty, pos.remaining)
            if size <= 0:
                break
            self.orders.submit(
                pos, lambda p=price, s=size: pos.submit_take_profit(p, s, at=now), now
            )

    def _quarantine(self, symbol: str, reason: str, now: int) -> None:
        pos = self.registry.get(symbol)
        if pos is None:
            log.warning("quarantine_ignored", symbol=symbol, reason=reason)
            return
        log.error("position_quarantine_requested", position_id=pos.id, reason=reason)
        self.apply_event(pos, lambda: pos.quarantine(reason, at=now), now)

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
                self.stops.tell(replace(skip, reason="not managed"))
            return
        self.end_entry(pos, reason, now)
        if pos.is_terminal or pos.remaining <= 0 or pos.data.exit_client_id is not None:
            busy = pos.data.exit_client_id is not None and not pos.is_terminal
            if force and busy:
                self.stops.tell(replace(skip, outcome=Outcome.IN_FLIGHT, reason="exit unresolved"))
            elif force:
                self.stops.tell(replace(skip, reason="no exposure"))
            return
        track = self.track(pos.id)
        refused = track.exit_failures  # ordinary closes refused so far (0: none, no back-off)
        if not force and refused and now < track.exit_next_at:
            return  # an exit was just refused: wait, never loop
        if not force and refused and refused >= self.params.max_exit_attempts:
            log.error("exit_attempts_exhausted", position_id=pos.id, symbol=symbol)
            self.apply_event(pos, lambda: pos.quarantine("exit refused repeatedly", at=now), now)
            return
        change = self.orders.submit(pos, lambda: pos.request_exit(at=now, reason=reason), now)
        if change is not None:
            self.poll_fills(now)
        elif force:
            self.stops.tell(replace(skip, reason="the position refused the exit"))

    def end_entry(self, pos: Position, reason: str, now: int) -> None:
        """Cancel a working entry; it only counts as ended once its fills are all applied."""
        if not pos.data.entry_working or self.track(pos.id).entry_end is not None:
            return
        cid = pos.entry_client_id
        ended = self.orders.cancel(pos.symbol, cid, now)
        if ended is None:  # not open: filled or cancelled already; the venue says which
            try:
                ended = self.port.order_by_client_id(pos.symbol, cid)
            except (Temporary, AmbiguousOutcome):
                return
            if ended is None or ended.status is OrderStatus.ACKED:
                return
            if ended.status is OrderStatus.FILLED:
                self.poll_fills(now)
                return
        self.poll_fills(now)  # fills made before the cancel must be in first
        if ended.filled_qty > pos.data.entry_filled:
            self.track(pos.id).entry_end = (ended.filled_qty, reason)
            return
        self.finish_entry(pos, reason, now)

    def _settle_ended_entries(self, now: int) -> None:
        """Finish entries whose cancellation waited for fills the venue had not shown yet."""
        for pos in list(self.registry.values()):
            track = self._tracks.get(pos.id)
            pending = track.entry_end if track else None
            if track is None or pending is None or pos.data.entry_filled < pending[0]:
                continue
            track.entry_end = None
            if pos.data.entry_working:
                self.finish_entry(pos, pending[1], now)

    def finish_entry(self, pos: Position, reason: str, now: int) -> None:
        """Record a working entry as ended without further fills (cancelled)."""
        cid = pos.entry_client_id
        self.apply_event(pos, lambda: pos.on_entry_cancelled(cid, reason, at=now), now)

    def _kill(self, latched: bool, reason: str, now: int) -> None:
        self.kill_latched = latched
        self.store.set_value(
            "kill_switch", {"latched": latched, "reason": reason, "at": now}, at=now
        )
        log.warning("kill_switch_changed", latched=latched, reason=reason)
        if not latched:
            return
        for pos in list(self.registry.values()):
            self.end_entry(pos, reason, now)
            for order in self.store.orders(position_id=pos.id, statuses={OrderStatus.ACKED}):
                if order.role is OrderRole.TAKE_PROFIT:
                    self.orders.cancel(pos.symbol, order.client_id, now)
            if track := self._tracks.get(pos.id):
                track.targets = ()

    # ------------------------------------------------------------------ timer

    def _tick(self, now: int) -> None:
        if self.reconciler.due():
            self.reconciler.scheduled_pass(now)
        if self.kill_latched and self._monotonic() - self._kill_swept_at >= KILL_SWEEP_S:
            self._kill_swept_at = self._monotonic()  # an entry whose cancel failed, or that
            for pos in list(self.registry.values()):  # was unresolved at the kill, ends now
                self.end_entry(pos, "kill switch", now)
        at = self._equity_at
        if now - at >= EQUITY_EVERY_MS or now // MINUTE_MS > at // MINUTE_MS:
            self._report_equity(now)  # and on the first beat of each minute: a bar closed
        self.orders.resolve_all(now)
        self.poll_fills(now)
        self._settle_ended_entries(now)
        for pos in list(self.registry.values()):
            track = self._tracks.get(pos.id)
            expiry = track.expires_at if track else None
            if expiry is not None and now >= expiry and pos.data.entry_working:
                self._close(pos.symbol, "entry expired", now)
            elif pos.current is State.UNPROTECTED:
                self.stops.protect(pos, now)

    def _report_equity(self, now: int) -> None:
        """Tell allocator and risk what the account holds (they size and cap from it)."""
        try:
            account = self.port.account()
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("account_read_failed", error=str(err))
            return
        self._equity_at = now
        exposure = sum(
            (abs(p.remaining * (p.data.avg_entry_price or 0)) for p in self.registry.values()),
            Decimal(0),
        )
        reading = AccountEquity(
            account.equity,
            now,
            account.used_margin,
            available_margin=account.available_margin,
            unrealized_pnl=account.unrealized_pnl,
            exposure=exposure,
        )
        self.emit(reading, ALLOCATOR, RISK)

    # ------------------------------------------------------------------ helpers

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
