"""Protection monitor (basic): every exposed position must have a resting stop.

Two independent views are checked on a timer:

- the registry, through ``PositionChanged``: a position ``unprotected`` for longer than
  ``grace_ms`` (the normal fill -> stop window) is reported;
- the venue itself: every exchange position must be covered by reduce-only stop orders on its
  exit side whose quantities add up to at least its size. This catches a stop the venue
  cancelled on its own, which the registry cannot see.

A naked position gets ``EnsureStop`` sent to execution, again every ``repeat_ms`` while it stays
naked. A failed fetch is never read as "flat": the check is skipped and logged. Exchange
positions that no managed position explains are reported (adoption comes with reconciliation).
The full escalation ladder (wider stops, flatten, quarantine) builds on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from actors.core import EXECUTION, Outbox
from actors.messages import EnsureStop, PositionChanged, PositionView, Tick
from domain.errors import AmbiguousOutcome, Temporary
from domain.models import Order, OrderRole, OrderType, PositionSnapshot
from domain.ports import ExchangePort
from domain.position_table import TERMINAL, State

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class ProtectionReport:
    """The last check, for health and operators."""

    checked_at: int = 0
    naked: dict[str, int] = field(default_factory=dict)  # symbol -> naked since (ms)
    unmanaged: list[str] = field(default_factory=list)
    fetch_failed: bool = False


def covered(position: PositionSnapshot, orders: list[Order]) -> bool:
    """True when reduce-only stops on the exit side add up to at least the position's size."""
    exit_side = position.side.exit_side
    stops = [
        o
        for o in orders
        if o.symbol == position.symbol
        and o.reduce_only
        and o.side is exit_side
        and (o.type is OrderType.STOP or o.role is OrderRole.STOP)
    ]
    return sum((o.qty - o.filled_qty for o in stops), Decimal(0)) >= position.qty


class ProtectionCore:
    name = "protection"

    def __init__(
        self,
        port: ExchangePort,
        *,
        interval_ms: int = 2_000,
        grace_ms: int = 2_000,
        repeat_ms: int = 5_000,
    ) -> None:
        self.port = port
        self.interval_ms = interval_ms
        self.grace_ms = grace_ms
        self.repeat_ms = repeat_ms
        self.views: dict[str, PositionView] = {}
        self.report = ProtectionReport()
        self._naked_since: dict[str, int] = {}
        self._asked_at: dict[str, int] = {}

    def handle(self, message: object, now: int) -> Outbox:
        match message:
            case PositionChanged(view=view):
                if view.state in TERMINAL:
                    self.views.pop(view.symbol, None)
                else:
                    self.views[view.symbol] = view
                return []
            case Tick():
                if 0 <= now - self.report.checked_at < self.interval_ms:
                    return []
                return self.check(now)
            case _:
                return []

    def check(self, now: int) -> Outbox:
        naked: set[str] = {
            v.symbol
            for v in self.views.values()
            if v.state is State.UNPROTECTED and now - v.updated_at >= self.grace_ms
        }
        unmanaged: list[str] = []
        try:
            positions = self.port.positions()
            orders = self.port.open_orders()
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("protection_check_failed", error=str(err))
            self.report.fetch_failed = True
            positions, orders = [], []
        else:
            self.report.fetch_failed = False
            for position in positions:
                if position.symbol not in self.views:
                    unmanaged.append(position.symbol)
                if not covered(position, orders):
                    naked.add(position.symbol)
        out: Outbox = []
        for symbol in sorted(naked):
            since = self._naked_since.setdefault(symbol, now)
            if now - since < self.grace_ms:  # the normal fill -> stop window
                continue
            if now - self._asked_at.get(symbol, -self.repeat_ms) < self.repeat_ms:
                continue
            self._asked_at[symbol] = now
            log.warning("naked_position_found", symbol=symbol, naked_ms=now - since)
            out.append((EXECUTION, EnsureStop(symbol, f"naked for {now - since} ms")))
        for symbol in list(self._naked_since):
            if symbol not in naked:
                del self._naked_since[symbol]
                self._asked_at.pop(symbol, None)
        if unmanaged:
            log.warning("unmanaged_positions", symbols=unmanaged)
        self.report = ProtectionReport(
            now, dict(self._naked_since), unmanaged, self.report.fetch_failed
        )
        return out
