"""The control layer: operator commands as transport-free functions (ARCHITECTURE 4 and 8).

Each command is a function ``(core, now) -> (result, outbox)`` on the execution core, which owns
the registry and the journal, so every order a command sends is written ahead like any other.
The same function runs

- inside the service, on the execution actor's thread (``ControlCore`` takes requests from the
  control inbox, ``persistence.control``, and later from Telegram), or
- in the command-line process itself when no service holds the store (``run.py kill`` with the
  service stopped builds an execution core of its own and calls the same function).

``result`` is a JSON-ready dict that says what was done; ``outbox`` carries the messages other
actors must see (the kill switch to risk, position changes).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from actors.core import HISTORY, RISK, Outbox
from actors.messages import Audit, Flatten, KillSwitchChanged, Tick
from domain.errors import BastionError
from domain.models import Order, OrderRole, OrderStatus
from domain.ports import order_origin
from domain.position import Position
from domain.position_table import State
from domain.reconcile import Adopt, CancelOrder, ForgetStop, PlaceStop
from persistence.control import ControlInbox, Request
from persistence.history.models import EventKind

if TYPE_CHECKING:
    from actors.execution import ExecutionCore

log = structlog.get_logger(__name__)
Result = dict[str, Any]
Command = Callable[["ExecutionCore", int], tuple[Result, Outbox]]
FLAT_CHECKS = 10
FLAT_CHECK_WAIT_S = 0.5
PROTECTIVE = (Adopt, ForgetStop, PlaceStop)


def gather(core: ExecutionCore, out: Outbox, body: Callable[[], Any]) -> Any:
    """Call ``body`` outside ``handle`` and keep what the core wanted to tell other actors."""
    with core.collecting(out):
        return body()


def kill(reason: str, *, flatten: bool = False, by: str = "operator") -> Command:
    """Latch the kill switch: cancel working entries and take-profits, keep every stop.

    With ``flatten`` also close every position (unknown ones are adopted first) with reduce-only
    market orders and check at the venue that the account is flat. Idempotent.
    """

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        out: Outbox = []
        was = core.kill_latched
        working = _working(core, (OrderRole.ENTRY, OrderRole.TAKE_PROFIT))
        if flatten:  # adopt what no one manages, so that it is closed too
            gather(core, out, lambda: core.reconciler.run(now, trust_unknown=True))
        latch = KillSwitchChanged(True, reason, now)
        out.extend(core.handle(latch, now))
        out.append((RISK, latch))
        result: Result = {
            "command": "kill",
            "by": by,
            "reason": reason,
            "at": now,
            "was_latched": was,
            "latched": True,
            "cancelled": _ended(core, working),
        }
        if flatten:
            result["flatten"] = _flatten(core, reason, now, out)
        try:  # what the venue still shows working, so a failed cancel is never hidden
            orders = core.port.open_orders()
        except BastionError as err:
            result["still_working"] = [{"error": f"venue unreadable: {err}"}]
        else:
            result["still_working"] = _still_working(
                orders, (OrderRole.ENTRY, OrderRole.TAKE_PROFIT)
            )
        result["stops_kept"] = _stops(core)
        log.warning("kill_switch_command", **{k: v for k, v in result.items() if k != "at"})
        return result, out

    return run


def resume(*, by: str = "operator") -> Command:
    """Release the kill switch: entries are allowed again. Idempotent."""

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        was = core.kill_latched
        release = KillSwitchChanged(False, f"resumed by {by}", now)
        out = [*core.handle(release, now), (RISK, release)]
        log.warning("kill_switch_released", by=by, was_latched=was)
        return {"command": "resume", "by": by, "was_latched": was, "latched": False}, out

    return run


def pause(symbol: str, *, by: str = "operator") -> Command:
    """No new entries on ``symbol``; a position on it stays managed and protected (its stop
    stays, exits and closes work). Persisted: it survives a restart. Idempotent.

    Result: ``symbol``, ``paused``, ``was_paused``, ``paused_symbols`` (all of them, sorted) and
    ``position`` (the managed position on it, ``{"position_id", "state"}``, or None). A symbol
    the venue does not list is refused: ``refused: "unknown_symbol"`` and ``error``.
    """
    return _pausing("pause", symbol, paused=True, by=by)


def unpause(symbol: str, *, by: str = "operator") -> Command:
    """Entries on ``symbol`` are allowed again. Idempotent; the result is shaped as ``pause``'s.
    A paused symbol the venue no longer lists can still be unpaused."""
    return _pausing("unpause", symbol, paused=False, by=by)


def _pausing(name: str, symbol: str, *, paused: bool, by: str) -> Command:
    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        delisted = not paused and symbol in core.paused
        if not delisted and (refused := _unknown_symbol(core, name, symbol)) is not None:
            return {**refused, "by": by}, []
        was = core.set_paused(symbol, paused, by=by, now=now)
        pos = core.registry.get(symbol)
        held = None if pos is None else {"position_id": pos.id, "state": pos.current.value}
        result: Result = {
            "command": name,
            "by": by,
            "symbol": symbol,
            "paused": paused,
            "was_paused": was,
            "paused_symbols": sorted(core.paused),
            "position": held,
        }
        return result, []

    return run


def close(symbol: str, *, by: str = "operator", reason: str = "operator close") -> Command:
    """Close the managed position on ``symbol`` with a reduce-only market order, through the
    state machine and the journal like any close (``CloseRequested``); a working entry is
    cancelled first. Allowed while the kill switch is latched (it only reduces risk). It does
    not wait for the fill: the answer says what was sent and what is known so far.

    Fills the venue made since the last poll are applied first (a stop that fired meanwhile
    closed the position already). A close the venue refused before is tried again at once:
    an operator's close clears the back-off. With no managed position nothing is sent.

    Result: ``symbol``, ``position_id`` (None: none managed), ``closing`` (the position is
    ended or an exit for it is in flight), ``state`` (after the command), ``exit`` (the exit
    order sent, ``{"client_id", "status"}``, or None) and ``detail`` (what happened, in words).
    """

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        result: Result = {"command": "close", "by": by, "reason": reason, "symbol": symbol}
        result.update(position_id=None, closing=False, state=None, exit=None)
        if (refused := _unknown_symbol(core, "close", symbol)) is not None:
            return {**result, **refused, "detail": refused["error"]}, []
        out: Outbox = []
        pos = core.registry.get(symbol)
        if pos is None:
            result["detail"] = _nothing_managed(core, symbol)
            log.warning("operator_close", **result)
            return result, out
        before = {o.client_id for o in _exits(core, pos)}
        in_flight = pos.data.exit_client_id
        gather(core, out, lambda: core.poll_fills(now))  # what the venue did meanwhile, first
        ended = pos.is_terminal  # a stop that fired while nobody looked
        if not ended:
            gather(core, out, lambda: core.operator_close(symbol, f"{reason} (by {by})", now))
        sent = next((o for o in reversed(_exits(core, pos)) if o.client_id not in before), None)
        closing, detail = _close_outcome(core, pos, sent, in_flight, ended_before=ended)
        result.update(position_id=pos.id, closing=closing, state=pos.current.value, detail=detail)
        if sent is not None:
            # the journal keeps a filled exit at acked; the position closing says it filled
            filled = sent.status is OrderStatus.ACKED and pos.current is State.CLOSED
            status = "filled" if filled else sent.status.value
            result["exit"] = {"client_id": sent.client_id, "status": status}
        log.warning("operator_close", **result)
        return result, out

    return run


def reconcile(*, dry_run: bool = False) -> Command:
    """One reconciliation pass (``dry_run``: the plan only)."""

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        out: Outbox = []
        report = gather(core, out, lambda: core.reconciler.run(now, dry_run=dry_run))
        return report.to_dict(), out

    return run


def missing_stops(*, apply: bool = False) -> Command:
    """Every exposed position without a correct stop, and the stop it gets (``apply``: placed)."""

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        out: Outbox = []
        plan = core.reconciler.run(now, dry_run=True)
        wanted = [a for a, _ in plan.done if isinstance(a, PlaceStop)]
        found = [
            {
                "symbol": a.symbol,
                "side": a.side.value,
                "qty": str(a.qty),
                "stop": str(a.price if a.price is not None else _stop_for(core, a.symbol)),
                "position_id": a.position_id,
            }
            for a in wanted
        ]
        result: Result = {"command": "place_missing_stops", "naked": found, "applied": apply}
        if plan.plan is None:  # the venue could not be read: nothing is known to be safe
            result["error"] = f"venue unreadable: {plan.error}"
            return result, out
        if apply and wanted:
            done = gather(
                core, out, lambda: core.reconciler.run(now, only=PROTECTIVE, trust_unknown=True)
            )
            result["outcomes"] = [
                {"action": type(a).__name__, "symbol": a.symbol, "outcome": outcome}
                for a, outcome in done.done
            ]
            result["stops"] = _stops(core)
        return result, out

    return run


ROLE_NAMES = {
    OrderRole.ENTRY: "entry",
    OrderRole.STOP: "stop",
    OrderRole.TAKE_PROFIT: "take_profit",
    OrderRole.EXIT: "exit",
}
ATTENTION = frozenset({"naked", "chaos", "unknown", "mismatch", "absent"})


def audit() -> Command:
    """Every open order at the venue classified against the registry (read-only)."""

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        report = core.reconciler.run(now, dry_run=True)
        if report.plan is None:
            return {"command": "audit", "error": report.error, "needs_attention": True}, []
        cancels = {
            a.exchange_id: a.reason for a in report.plan.actions if isinstance(a, CancelOrder)
        }
        foreign = {o.exchange_id for o in report.plan.untouched}
        rows = []
        for order in report.venue_orders:
            role, position_id = order_origin(order.client_id, order.type, order.reduce_only)
            if order.exchange_id in cancels:
                verdict, why = "orphan", cancels[order.exchange_id]
            elif order.exchange_id in foreign:
                verdict, why = "unknown", "not placed by Bastion; left alone"
            else:
                verdict, why = ROLE_NAMES[role], ""
            rows.append(
                {
                    "symbol": order.symbol,
                    "class": verdict,
                    "client_id": order.client_id or None,
                    "exchange_id": order.exchange_id,
                    "position_id": position_id,
                    "side": order.side.value,
                    "type": order.type.value,
                    "qty": str(order.qty),
                    "trigger": str(order.trigger_price) if order.trigger_price else None,
                    "price": str(order.price) if order.price else None,
                    "reduce_only": order.reduce_only,
                    "note": why or None,
                }
            )
        symbols = report.to_dict()["symbols"]
        attention = any(r["class"] in ("orphan", "unknown") for r in rows) or any(
            s["classification"] in ATTENTION for s in symbols
        )
        result = {"command": "audit", "orders": rows, "positions": symbols}
        return {**result, "needs_attention": attention}, []

    return run


def until_ready() -> Command:
    """A reconciliation pass unless one already said ready; answers ``{"ready": bool}``."""

    def run(core: ExecutionCore, now: int) -> tuple[Result, Outbox]:
        out: Outbox = []
        ready = core.ready or gather(core, out, lambda: core.reconciler.scheduled_pass(now))
        return {"ready": ready, "registry": len(core.registry)}, out

    return run


COMMANDS: dict[str, Callable[..., Command]] = {
    "kill": kill,
    "resume": resume,
    "pause": pause,
    "unpause": unpause,
    "close": close,
    "reconcile": reconcile,
    "place_missing_stops": missing_stops,
    "audit": audit,
}


def command_for(request: Request) -> Command:
    """The control function a stored request names (``ValueError`` for an unknown one)."""
    factory = COMMANDS.get(request.command)
    if factory is None:
        raise ValueError(f"unknown control command {request.command!r}")
    return factory(**request.args)


# ---------------------------------------------------------------------- the service side


class ControlCore:
    """Takes requests from the control inbox on each beat and runs them on the execution actor.

    ``execute`` runs a command on the execution actor's thread and returns its result (the
    runtime asks the actor; a test may call the core directly).
    """

    name = "control"

    def __init__(self, inbox: ControlInbox, execute: Callable[[Command], Result]) -> None:
        self.inbox = inbox
        self.execute = execute
        self._audits: Outbox = []

    def handle(self, message: object, now: int) -> Outbox:
        if isinstance(message, Tick):
            self.drain(now)
        audits, self._audits = self._audits, []
        return audits

    def drain(self, now: int = 0) -> int:
        """Run every pending request, oldest first; returns how many ran. Each one is audited
        (command, who sent it, whether it succeeded) for the ``history`` actor."""
        requests = self.inbox.pending()
        for request in requests:
            if not self.inbox.claim(request.id):
                continue  # withdrawn by its command meanwhile
            log.info(
                "control_request", id=request.id, command=request.command, by=request.requested_by
            )
            ok = True
            try:
                result = self.execute(command_for(request))
            except Exception as err:  # the request fails, the service goes on
                log.exception("control_request_failed", id=request.id, command=request.command)
                result, ok = {"error": f"{type(err).__name__}: {err}"}, False
            self.inbox.complete(request.id, result, ok=ok)
            payload = {"request_id": request.id, "ok": ok, "args": request.args}
            audit = Audit(
                EventKind.OPERATOR_COMMAND,
                request.command,
                now,
                who=request.requested_by,
                payload=payload,
            )
            self._audits.append((HISTORY, audit))
        return len(requests)


# ---------------------------------------------------------------------- helpers


def _working(core: ExecutionCore, roles: tuple[OrderRole, ...]) -> list[tuple[str, str, str]]:
    statuses = {OrderStatus.ACKED, OrderStatus.SENDING, OrderStatus.UNKNOWN}
    return [
        (o.client_id, o.symbol, o.role.value)
        for o in core.store.orders(statuses=statuses)
        if o.role in roles
    ]


def _ended(core: ExecutionCore, orders: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    """The working orders the kill ended, with how they ended (cancelled, or filled first)."""
    ended = []
    for client_id, symbol, role in orders:
        status = core.store.order_status(client_id)
        if status in (OrderStatus.CANCELLED, OrderStatus.FILLED, OrderStatus.REJECTED):
            ended.append({"client_id": client_id, "symbol": symbol, "role": role, "status": status})
    return ended


def _unknown_symbol(core: ExecutionCore, command: str, symbol: str) -> Result | None:
    """None for a symbol the venue lists; otherwise the refusal, with the likely spellings."""
    if symbol in core.instruments:
        return None
    key = symbol.upper()
    near = [s for s in core.instruments if s.upper() == key or s.upper().startswith(f"{key}/")]
    near = near or difflib.get_close_matches(key, list(core.instruments), n=3)
    hint = f"; did you mean {' or '.join(sorted(near))}?" if near else ""
    log.warning("control_refused", command=command, symbol=symbol, reason="unknown_symbol")
    return {
        "command": command,
        "symbol": symbol,
        "refused": "unknown_symbol",
        "error": f"unknown symbol {symbol!r}: the venue lists no such instrument{hint}",
    }


def _exits(core: ExecutionCore, pos: Position) -> list[Order]:
    return [o for o in core.store.orders(position_id=pos.id) if o.role is OrderRole.EXIT]


def _nothing_managed(core: ExecutionCore, symbol: str) -> str:
    detail = f"no managed position on {symbol}"
    try:
        held = [p for p in core.port.positions() if p.symbol == symbol and p.qty > 0]
    except BastionError:
        return detail  # nothing is sent either way
    if held:
        detail += (
            f"; the venue shows {held[0].qty} held that Bastion does not manage (`run.py "
            "reconcile` adopts it and gives it a stop; then close it)"
        )
    return detail


def _close_outcome(
    core: ExecutionCore,
    pos: Position,
    sent: Order | None,
    in_flight: str | None,
    *,
    ended_before: bool,
) -> tuple[bool, str]:
    """Whether the position is ended or on its way out, and what happened, for :func:`close`."""
    state = pos.current.value
    if ended_before:
        return True, f"nothing sent: the venue's fills had {state} the position already"
    if sent is not None:
        cid = sent.client_id
        if sent.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            return False, f"the venue refused the exit {cid} (see the log); still {state}"
        if pos.is_terminal:
            return True, f"reduce-only market exit {cid} filled; the position is {state}"
        return True, f"reduce-only market exit {cid} sent ({sent.status.value}); not filled yet"
    if in_flight is not None and not pos.is_terminal:
        return True, f"an exit is already in flight ({in_flight}); nothing more was sent"
    if pos.is_terminal:
        return True, f"the working entry was cancelled; nothing was held; the position is {state}"
    if pos.remaining <= 0:
        entry = core.store.order_status(pos.entry_client_id)
        if entry is OrderStatus.CANCELLED:
            return True, "the working entry was cancelled; its last fills are being applied"
        return False, f"nothing held yet, and the working entry could not be cancelled ({entry})"
    return False, f"the position refused the exit ({state}); see the log"


def _stops(core: ExecutionCore) -> list[dict[str, str]]:
    return [
        {"symbol": p.symbol, "position_id": p.id, "stop": str(s.price), "qty": str(s.qty)}
        for p in core.registry.values()
        if (s := p.data.stop_resting) is not None
    ]


def _stop_for(core: ExecutionCore, symbol: str) -> object:
    pos = core.registry.get(symbol)
    return core.stops.price_for(pos) if pos is not None else None


def _flatten(core: ExecutionCore, reason: str, now: int, out: Outbox) -> Result:
    """Close everything reduce-only, then check at the venue until it is flat (bounded).

    The operator's flatten is forced: no back-off or attempt cap, quarantined positions too. It
    is flat only when the venue shows no position and no working order of Bastion's that could
    open one.
    """
    started = time.monotonic()
    closing = sorted(core.registry)
    left: list[str] = []
    for attempt in range(FLAT_CHECKS):
        at = now + int((time.monotonic() - started) * 1000)
        if attempt:
            time.sleep(FLAT_CHECK_WAIT_S)
            out.extend(core.handle(Tick(at), at))  # fills in, working entries cancelled
        out.extend(core.handle(Flatten(None, reason, force=True), at))
        left = _exposure_left(core)
        if not left:
            break
    return {"tried": closing, "flat": not left, "still_open": left}


def _exposure_left(core: ExecutionCore) -> list[str]:
    """Symbols with a position, or an order of Bastion's that opens one, at the venue."""
    try:
        held = {p.symbol for p in core.port.positions() if p.qty > 0}
        working = _still_working(core.port.open_orders(), (OrderRole.ENTRY,))
    except BastionError as err:
        log.warning("flat_check_failed", error=str(err))
        return ["(venue unreadable)"]
    return sorted(held | {w["symbol"] for w in working})


def _still_working(orders: list[Order], roles: tuple[OrderRole, ...]) -> list[dict[str, str]]:
    found = []
    for order in orders:
        role, position_id = order_origin(order.client_id, order.type, order.reduce_only)
        if position_id is not None and role in roles:
            found.append({"client_id": order.client_id, "symbol": order.symbol, "role": role})
    return found
