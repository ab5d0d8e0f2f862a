"""Reconciliation passes: the I/O around :mod:`domain.reconcile` (ARCHITECTURE 4).

A pass, run on the execution actor's thread (it owns the registry and the journal):

1. resolve every journal entry left ``sending``/``unknown`` by its client id;
2. apply the fills the venue reports since the persisted cursor (idempotent by fill id);
3. read the venue's positions and open orders; a failed read ends the pass ``not_ready``, it is
   never taken for "flat";
4. settle entries the registry thinks are working but the venue no longer lists;
5. plan (:func:`domain.reconcile.plan`) and act, action by action; one failed action does not stop
   the others and the next pass retries what is left.

The status is ``ready`` when the reads succeeded, no journal entry is unresolved and nothing is
waiting for a confirming pass (an absence or a size difference is acted on only when a second
pass sees it too); otherwise ``recheck`` (pass again soon) or ``not_ready``. New entries are
allowed only once a pass said ``ready``.

``dry_run`` reads the venue and reports what a pass would do without writing anything: fills are
applied to in-memory copies, the journal is not resolved (its unresolved entries are listed) and
no order is sent or cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from actors.core import HISTORY
from actors.messages import Audit
from domain.errors import AmbiguousOutcome, BastionError, DomainError, Rejected, Temporary
from domain.models import Fill, Order, OrderRole, OrderStatus, PositionSide
from domain.position import Position, parse_client_order_id
from domain.position_table import State
from domain.reconcile import (
    Action,
    AdjustQty,
    Adopt,
    CancelOrder,
    CloseAbsent,
    ForgetStop,
    Managed,
    PlaceStop,
    Plan,
    Recheck,
    Venue,
    plan,
)
from persistence.history.models import EventKind

if TYPE_CHECKING:
    from actors.execution import ExecutionCore

log = structlog.get_logger(__name__)
READY, RECHECK, NOT_READY = "ready", "recheck", "not_ready"
LAST_RECONCILIATION = "last_reconciliation"


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one pass found and did; ``to_dict`` is what ``run.py reconcile --json`` prints."""

    status: str
    at: int
    dry_run: bool
    plan: Plan | None = None
    done: tuple[tuple[Action, str], ...] = ()  # each action with its outcome
    unresolved: tuple[str, ...] = ()
    fills_applied: int = 0
    error: str = ""
    venue_orders: tuple[Order, ...] = ()  # the open orders the pass read

    def to_dict(self) -> dict[str, Any]:
        reports = self.plan.reports if self.plan else ()
        untouched = self.plan.untouched if self.plan else ()
        return {
            "status": self.status,
            "at": self.at,
            "dry_run": self.dry_run,
            "error": self.error or None,
            "fills_applied": self.fills_applied,
            "unresolved_orders": list(self.unresolved),
            "symbols": [
                {
                    "symbol": r.symbol,
                    "classification": r.classification.value,
                    "position_id": r.position_id,
                    "venue_qty": str(r.venue_qty),
                    "registry_qty": str(r.registry_qty),
                    "detail": r.detail or None,
                }
                for r in reports
            ],
            "actions": [{**action_fields(a), "outcome": outcome} for a, outcome in self.done],
            "left_alone": [
                {"symbol": o.symbol, "client_id": o.client_id, "exchange_id": o.exchange_id}
                for o in untouched
            ],
        }

    def summary(self) -> dict[str, Any]:
        """The short form persisted as ``last_reconciliation`` and logged."""
        counts: dict[str, int] = {}
        for r in self.plan.reports if self.plan else ():
            counts[r.classification.value] = counts.get(r.classification.value, 0) + 1
        return {
            "status": self.status,
            "at": self.at,
            "symbols": counts,
            "actions": len(self.done),
            "error": self.error or None,
        }


def _audit(action: Action, outcome: str, now: int) -> Audit:
    """A reconciliation action and its outcome, for the audit trail."""
    fields = {**action_fields(action), "outcome": outcome}
    return Audit(
        EventKind.RECONCILIATION_ACTION,
        type(action).__name__,
        now,
        fields.get("symbol"),
        fields.get("position_id"),
        payload=fields,
    )


def action_fields(action: Action) -> dict[str, Any]:
    """An action as JSON-ready fields: its kind and its attributes as strings."""
    fields = {k: getattr(action, k) for k in action.__slots__}  # type: ignore[union-attr]
    out: dict[str, Any] = {"action": type(action).__name__}
    for key, value in fields.items():
        if isinstance(value, PositionSide):
            out[key] = value.value
        elif isinstance(value, Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Doubt:
    """A difference first seen at ``since`` (monotonic s): what the venue showed and the
    position's version then. It is confirmed only by a later pass that sees the same thing, at
    least ``confirm_after_s`` later, with no event (a fill) applied to the position meanwhile."""

    seen: object
    version: int
    since: float


@dataclass
class Reconciler:
    """Runs passes for one :class:`ExecutionCore` (see the module docstring)."""

    core: ExecutionCore
    doubts: dict[str, Doubt] = field(default_factory=dict)  # position id or unknown:<symbol>
    ready: bool = False  # a pass said READY since the core started: entries may start
    _copies: dict[str, Position] = field(default_factory=dict)  # dry run: fills go to copies
    _last_at: float | None = None  # monotonic time of the last scheduled pass
    _settled: bool = False  # the last pass left no doubt to confirm

    # ------------------------------------------------------------------ schedule

    def scheduled_pass(self, now: int) -> bool:
        """A pass on the timer (or before a first entry); True once one said ready."""
        self._last_at = self.core.monotonic()
        report = self.run(now)
        self._settled = report.status == READY
        if self._settled and not self.ready:
            log.info("reconciliation_ready", **report.summary())
        self.ready = self.ready or self._settled
        return self.ready

    def soon(self) -> None:
        """Run a pass on the next beat (exposure nobody manages was seen)."""
        self._settled = False
        self._last_at = None

    def due(self) -> bool:
        """Until ready, or while a doubt waits: every ``recheck_after_s``; then every
        ``reconcile_every_s``."""
        if self._last_at is None:
            return True
        params = self.core.params
        every = params.reconcile_every_s if self.ready and self._settled else params.recheck_after_s
        return self.core.monotonic() - self._last_at >= every

    def run(
        self,
        now: int,
        *,
        dry_run: bool = False,
        only: tuple[type, ...] | None = None,
        trust_unknown: bool = False,
    ) -> ReconcileReport:
        """One pass; ``only`` limits the actions taken to those kinds (the rest are reported
        as skipped). Unknown exposure is adopted on its first sighting when ``trust_unknown``
        (an operator asked for it) and always shown as adopted in a dry run."""
        try:
            return self._run(now, dry_run=dry_run, only=only, trust=trust_unknown or dry_run)
        finally:
            for copy in self._copies.values():
                copy.discard()
            self._copies = {}

    def _run(
        self, now: int, *, dry_run: bool, only: tuple[type, ...] | None, trust: bool
    ) -> ReconcileReport:
        core = self.core
        if not dry_run:
            core.orders.resolve_all(now)
        unresolved = core.orders.unresolved()
        try:  # fills since the cursor (a dry run leaves it where it is)
            applied = core.apply_venue_fills(
                now, lambda fill: self._apply_fill(fill, now, dry_run=dry_run), advance=not dry_run
            )
            orders = core.port.open_orders()  # before positions: a stop that fires between
            venue = Venue(core.port.positions(), orders, core.instruments)  # shows as a flat venue
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("reconciliation_read_failed", error=str(err))
            return ReconcileReport(NOT_READY, now, dry_run, unresolved=unresolved, error=str(err))
        open_ids = {o.client_id for o in venue.orders if o.client_id}
        if not dry_run:
            self._settle_entries(open_ids, set(unresolved), now)
        seen = self._observations(venue)
        live = [self._copies.get(p.id, p) for p in core.registry.values() if not p.is_terminal]
        managed = [Managed.of(p, int(self._confirmed(p.id, *seen[p.id]))) for p in live]
        unknown = frozenset(
            key.removeprefix("unknown:")
            for key in seen
            if key.startswith("unknown:") and (trust or self._confirmed(key, *seen[key]))
        )
        decided = plan(managed, venue, core.params.adopted_stop_distance_frac, unknown)
        done = tuple((a, self._outcome(a, now, dry_run, only)) for a in decided.actions)
        if not dry_run:
            self._remember(decided, seen)
        status = READY if decided.settled and not unresolved else RECHECK
        report = ReconcileReport(
            status, now, dry_run, decided, done, unresolved, applied, "", tuple(venue.orders)
        )
        if not dry_run:
            core.store.set_value(LAST_RECONCILIATION, report.summary(), at=now)
            for action, outcome in done:
                core.emit(_audit(action, outcome, now), HISTORY)
        log.info("reconciliation_pass", dry_run=dry_run, **report.summary())
        return report

    # ------------------------------------------------------------------ doubts

    def _observations(self, venue: Venue) -> dict[str, tuple[object, int]]:
        """What the venue shows for each live position, and for exposure nobody manages."""
        held = {p.symbol: (p.side, p.qty) for p in venue.positions if p.qty > 0}
        seen: dict[str, tuple[object, int]] = {}
        for pos in self.core.registry.values():
            seen[pos.id] = (held.get(pos.symbol), self._copies.get(pos.id, pos).version)
        for symbol, shown in held.items():  # any of it may turn out to be nobody's
            seen[f"unknown:{symbol}"] = (shown, 0)
        return seen

    def _confirmed(self, key: str, shown: object, version: int) -> bool:
        doubt = self.doubts.get(key)
        if doubt is None or doubt.seen != shown or doubt.version != version:
            return False
        return self.core.monotonic() - doubt.since >= self.core.params.confirm_after_s

    def _remember(self, decided: Plan, seen: dict[str, tuple[object, int]]) -> None:
        """Keep the doubts this pass raised; an unchanged one keeps its first sighting."""
        kept: dict[str, Doubt] = {}
        for action in decided.actions:
            if not isinstance(action, Recheck):
                continue
            key = action.position_id or f"unknown:{action.symbol}"
            shown, version = seen.get(key, (None, -1))
            old = self.doubts.get(key)
            same = old is not None and (old.seen, old.version) == (shown, version)
            kept[key] = old if same and old else Doubt(shown, version, self.core.monotonic())
        self.doubts = kept

    # ------------------------------------------------------------------ reading

    def _apply_fill(self, fill: Fill, now: int, *, dry_run: bool) -> int:
        """1 when ``fill`` is new to a managed position (a dry run applies it to a copy)."""
        parsed = parse_client_order_id(fill.client_id) if fill.client_id else None
        pos = self.core.position_by_id(parsed[0]) if parsed else None
        pos = self._copies.get(pos.id, pos) if pos is not None else None
        if parsed is None or pos is None or fill.fill_id in pos.data.fill_ids:
            return 0  # not ours, or of a finished position: its exposure is judged by the plan
        if not dry_run:
            self.core.apply_fill(fill, now)
            return 1
        if pos.id not in self._copies:
            self._copies[pos.id] = self.core.store.load(pos.id)
        copy = self._copies[pos.id]
        try:
            copy.apply_fill(fill, parsed[1], at=now)  # a copy, never committed
        except DomainError:
            return 0
        return 1

    def _settle_entries(self, open_ids: set[str], unresolved: set[str], now: int) -> None:
        """An entry the registry thinks works but the venue does not list: ask how it ended."""
        core = self.core
        for pos in list(core.registry.values()):
            cid = pos.entry_client_id
            if not pos.data.entry_working or cid in open_ids or cid in unresolved:
                continue
            try:
                ended = core.port.order_by_client_id(pos.symbol, cid)
            except (Temporary, AmbiguousOutcome) as err:
                log.warning("entry_check_failed", position_id=pos.id, error=str(err))
                continue
            if ended is None:  # not visible yet, or never seen: the journal resolves it
                continue
            gone = ended.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED)
            if gone and ended.filled_qty <= pos.data.entry_filled:
                core.finish_entry(pos, "not working at the venue", now)

    # ------------------------------------------------------------------ acting

    def _outcome(
        self, action: Action, now: int, dry_run: bool, only: tuple[type, ...] | None
    ) -> str:
        if dry_run:
            return "planned"
        if only is not None and not isinstance(action, only):
            return "skipped"
        return self._act(action, now)

    def _act(self, action: Action, now: int) -> str:
        try:
            return self._dispatch(action, now)
        except (BastionError, DomainError) as err:
            log.warning(
                "reconciliation_action_failed", action=type(action).__name__, error=str(err)
            )
            return f"failed: {err}"

    def _dispatch(self, action: Action, now: int) -> str:
        core = self.core
        match action:
            case Recheck(position_id=pid, passes=passes, reason=reason):
                log.warning("reconciliation_doubt", position_id=pid, passes=passes, reason=reason)
                return "recheck next pass"
            case CloseAbsent():
                return self._close_absent(action, now)
            case Adopt():
                return self._adopt(action, now)
            case AdjustQty():
                return self._adjust(action, now)
            case ForgetStop(position_id=pid):
                pos = core.position_by_id(pid)
                if pos is None or pos.data.stop_resting is None:
                    return "skipped: no resting stop"
                core.stops.verify(pos, now)  # asked by client id: fired, or really gone
                return f"checked: state {pos.state}"
            case PlaceStop(symbol=symbol):
                return self._place_stop(symbol, now)
            case CancelOrder():
                return self._cancel(action, now)
        return "ignored"

    def _place_stop(self, symbol: str, now: int) -> str:
        core = self.core
        pos = core.registry.get(symbol)
        if pos is None:
            return "skipped: not managed"
        if core.track(pos.id).ladder_owned:
            return "skipped: the protection ladder is placing it"
        naked = pos.current in (State.UNPROTECTED, State.QUARANTINED) and pos.remaining > 0
        if naked and pos.data.stop_pending is None:
            core.stops.protect(pos, now, force=True)
        return f"state {pos.state}"

    def _fills_moved(self, pos: Position, now: int) -> bool:
        """Read the fills once more right before acting on a doubt: any news cancels it."""
        version = pos.version
        self.core.poll_fills(now)
        return pos.version != version

    def _doubted(self, position_id: str, now: int) -> Position | str:
        """The position a confirmed doubt is about, or why nothing is done after all."""
        pos = self.core.position_by_id(position_id)
        if pos is None:
            return "skipped: not managed"
        if self._fills_moved(pos, now):
            return "skipped: fills arrived; checked again next pass"
        return pos

    def _book(self, pos: Position, role: OrderRole, qty: Decimal, price: Decimal, now: int) -> None:
        """Make the registry follow the venue with a synthetic fill, ``recon-<id>-<version>``."""
        side = pos.side.entry_side if role is OrderRole.ENTRY else pos.side.exit_side
        fill = Fill(f"recon-{pos.id}-{pos.version}", pos.symbol, side, qty, price, now)
        self.core.apply_event(pos, lambda: pos.apply_fill(fill, role, at=now), now)

    def _close_absent(self, action: CloseAbsent, now: int) -> str:
        pos = self._doubted(action.position_id, now)
        if isinstance(pos, str):
            return pos
        if pos.data.entry_working:
            self.core.end_entry(pos, action.reason, now)
        if pos.is_terminal:
            return f"state {pos.state}"
        if pos.remaining <= 0:
            return "waiting for the entry to end"
        d = pos.data
        price = d.stop_resting.price if d.stop_resting else d.avg_entry_price or Decimal(0)
        log.warning("position_closed_absent", position_id=pos.id, reason=action.reason)
        self._book(pos, OrderRole.EXIT, d.remaining, price, now)
        return f"state {pos.state}"

    def _adopt(self, action: Adopt, now: int) -> str:
        core = self.core
        pos, change = Position.adopt(
            core.store.next_position_id(now),
            action.symbol,
            action.side,
            action.qty,
            action.entry_price,
            at=now,
            planned_stop=action.stop_price,
        )
        core.store.commit(pos, change)
        log.warning(
            "position_adopted",
            position_id=pos.id,
            symbol=pos.symbol,
            side=pos.side.value,
            qty=str(action.qty),
            stop=str(action.stop_price),
        )
        core.register(pos, now)
        return f"adopted as {pos.id}, state {pos.state}"

    def _adjust(self, action: AdjustQty, now: int) -> str:
        pos = self._doubted(action.position_id, now)
        if isinstance(pos, str):
            return pos
        role = OrderRole.ENTRY if action.delta > 0 else OrderRole.EXIT
        log.warning("position_size_adjusted", position_id=pos.id, delta=str(action.delta))
        self._book(pos, role, abs(action.delta), action.price, now)
        return f"state {pos.state}, size {pos.remaining}"

    def _cancel(self, action: CancelOrder, now: int) -> str:
        core = self.core
        if action.only_if_protected:
            pos = core.registry.get(action.symbol)
            rests = pos.data.stop_resting if pos is not None else None
            if pos is None or pos.current is not State.PROTECTED or rests is None:
                return "deferred: the right stop does not rest yet"
            if rests.client_id == action.client_id:
                return "kept: it is the position's stop"
        if action.client_id and core.store.orders(client_id=action.client_id):
            ended = core.orders.cancel(action.symbol, action.client_id, now)
        else:
            try:
                ended = core.port.cancel_order(
                    action.symbol, exchange_id=action.exchange_id, client_id=action.client_id
                )
            except (Temporary, AmbiguousOutcome, Rejected) as err:
                return f"failed: {err}"
        log.warning(
            "order_cancelled_by_reconciliation",
            symbol=action.symbol,
            client_id=action.client_id,
            reason=action.reason,
        )
        return "cancelled" if ended is not None else "not open any more"


__all__ = ["NOT_READY", "READY", "RECHECK", "ReconcileReport", "Reconciler", "action_fields"]
