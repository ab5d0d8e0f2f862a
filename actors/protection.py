"""Protection monitor: every exposed position must have a correct resting stop (ARCHITECTURE 4).

This core gathers evidence and runs the escalation ladder of :mod:`actors.ladder` (where the
policy and its decisions are written down). Two independent views:

- the registry, through ``PositionChanged``: a view ``unprotected`` is naked, and so is a
  ``quarantined`` one whose stop does not cover its size;
- the venue itself, every ``check_interval_s``: its positions and open orders. A correct stop is
  one reduce-only stop order on the exit side whose open quantity equals the position's size.
  Reduce-only stops on the exit side that cover the size some other way (several, or larger
  than the position: the venue cuts a reduce-only order to the position) are safe but untidy:
  logged (``stop_cover_untidy``) and left to reconciliation. Less than the size is naked. This
  catches a stop the venue cancelled on its own, which the registry cannot see.

A failed fetch is never read as flat or as safe: the venue's evidence is simply not updated, an
alert is raised (identical alerts are collapsed by the alerts actor) and the registry keeps
counting. Execution's answers (``OrderOutcome``) go to the ladder; every ``Tick`` lets it act.

The ladder widens a stop from the mark price: the venue's position snapshot when it has one,
else the latest ``MarkPrice`` from the feed (the runtime routes them here), else the mark
implied by the position's unrealized PnL; without any, from the last refused stop price.

Alerts repeat every ``quarantine_alert_interval_s`` for each quarantined position (whoever
quarantined it) and for each naked venue position that no managed position explains (those get no
orders from here: adopting them is reconciliation's job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import structlog

from actors.core import ALERTS, EXECUTION, Outbox
from actors.ladder import Ladder, LadderParams, Rung
from actors.messages import (
    Alert,
    MarkPrice,
    OrderOutcome,
    PositionChanged,
    PositionView,
    ReconcileSoon,
    Severity,
    Tick,
)
from adapters.settings import ProtectionSettings
from domain.errors import AmbiguousOutcome, Temporary
from domain.models import Instrument, Order, PositionSide, PositionSnapshot
from domain.ports import ExchangePort
from domain.position_table import TERMINAL, State
from domain.reconcile import is_stop

log = structlog.get_logger(__name__)


class Cover(StrEnum):
    CORRECT = "correct"  # exactly one reduce-only exit-side stop for exactly the size
    UNTIDY = "untidy"  # covered, but by several stops or a larger one
    NAKED = "naked"  # the stops on the exit side cover less than the size (or there are none)


def stop_cover(position: PositionSnapshot, orders: list[Order]) -> Cover:
    """How the venue's open orders cover one of its positions."""
    exit_side = position.side.exit_side
    stops = [
        o.qty - o.filled_qty
        for o in orders
        if o.symbol == position.symbol and o.reduce_only and o.side is exit_side and is_stop(o)
    ]
    if sum(stops, Decimal(0)) < position.qty:
        return Cover.NAKED
    return Cover.CORRECT if stops == [position.qty] else Cover.UNTIDY


def reference_price(
    position: PositionSnapshot, instrument: Instrument | None, feed_mark: Decimal | None = None
) -> Decimal | None:
    """The position's mark price: the venue's when it gives one, else the feed's, else the one
    its unrealized PnL implies (venues compute it from their mark), else None."""
    if position.mark_price is not None and position.mark_price > 0:
        return position.mark_price
    if feed_mark is not None and feed_mark > 0:
        return feed_mark
    upnl = position.unrealized_pnl
    if upnl is None or position.qty <= 0 or position.entry_price <= 0:
        return None
    size = position.qty * (instrument.contract_size if instrument is not None else Decimal(1))
    move = upnl / size
    mark = position.entry_price + (move if position.side is PositionSide.LONG else -move)
    return mark if mark > 0 else None


def registry_naked(view: PositionView) -> bool:
    if view.state is State.UNPROTECTED:
        return True
    return view.state is State.QUARANTINED and view.qty > 0 and view.stop_qty < view.qty


@dataclass(slots=True)
class ProtectionReport:
    """The last check, for health and operators."""

    checked_at: int = 0
    naked: dict[str, int] = field(default_factory=dict)  # symbol -> naked since (ms)
    rungs: dict[str, str] = field(default_factory=dict)  # symbol -> ladder rung reached
    unmanaged: list[str] = field(default_factory=list)
    fetch_failed: bool = False


class ProtectionCore:
    name = "protection"

    def __init__(self, port: ExchangePort, *, params: LadderParams | None = None) -> None:
        self.port = port
        self.params = params or LadderParams()
        self.ladder = Ladder(self.params)
        self.views: dict[str, PositionView] = {}
        self.report = ProtectionReport()
        self._checked_at: int | None = None
        self._unmanaged_since: dict[str, int] = {}
        self._repeat_at: dict[tuple[str, str], int] = {}  # (kind, symbol) -> last alert
        self._untidy: set[str] = set()
        self._marks: dict[str, Decimal] = {}  # latest mark price per symbol, from the feed

    @classmethod
    def from_settings(
        cls, port: ExchangePort, settings: ProtectionSettings, *, speed: float = 1.0
    ) -> ProtectionCore:
        return cls(port, params=LadderParams.from_settings(settings, speed=speed))

    def handle(self, message: object, now: int) -> Outbox:
        match message:
            case PositionChanged(view=view):
                return self._on_view(view, now)
            case OrderOutcome() as outcome:
                return self.ladder.outcome(outcome, now)
            case MarkPrice(symbol=symbol, price=price):
                self._marks[symbol] = price
                return []
            case Tick():
                out: Outbox = []
                last = self._checked_at
                if last is None or not 0 <= now - last < self.params.check_interval_ms:
                    out += self.check(now)
                out += self.ladder.step(now)
                out += self._repeat_alerts(now)
                self._update_report()
                return out
            case _:
                return []

    def _on_view(self, view: PositionView, now: int) -> Outbox:
        if view.state in TERMINAL:
            self.views.pop(view.symbol, None)
            return self.ladder.registry(
                view.symbol, None, view.side, naked=False, quarantined=False, now=now
            )
        self.views[view.symbol] = view
        return self.ladder.registry(
            view.symbol,
            view.position_id,
            view.side,
            naked=registry_naked(view),
            quarantined=view.state is State.QUARANTINED,
            now=now,
        )

    # ------------------------------------------------------------------ the venue's view

    def check(self, now: int) -> Outbox:
        """Read the venue's positions and open orders and give the ladder what they show."""
        self._checked_at = now
        try:
            positions = self.port.positions()
            orders = self.port.open_orders()
        except (Temporary, AmbiguousOutcome) as err:
            log.warning("protection_check_failed", error=str(err))
            self.report.fetch_failed = True
            text = "venue positions or open orders unreadable: stops cannot be verified"
            return [(ALERTS, Alert("protection_check_failed", Severity.WARNING, None, text, now))]
        self.report.fetch_failed = False
        self.report.checked_at = now
        instruments = self.port.instruments()
        out: Outbox = []
        seen: set[str] = set()
        for position in positions:
            symbol = position.symbol
            seen.add(symbol)
            view = self.views.get(symbol)
            cover = stop_cover(position, orders)
            self._note_untidy(symbol, cover)
            if view is None:
                if symbol not in self._unmanaged_since:
                    self._unmanaged_since[symbol] = now
                    out.append((EXECUTION, ReconcileSoon(symbol, "exposure nobody manages")))
            else:
                self._unmanaged_since.pop(symbol, None)
            out += self.ladder.venue(
                symbol,
                naked=cover is Cover.NAKED,
                position_id=view.position_id if view is not None else None,
                side=position.side,
                reference=reference_price(
                    position, instruments.get(symbol), self._marks.get(symbol)
                ),
                now=now,
            )
        for symbol in set(self.ladder.episodes) - seen:
            out += self.ladder.venue(
                symbol, naked=False, position_id=None, side=None, reference=None, now=now
            )
        for symbol in set(self._unmanaged_since) - seen:
            del self._unmanaged_since[symbol]
        self.report.unmanaged = sorted(self._unmanaged_since)
        if self.report.unmanaged:
            log.warning("unmanaged_positions", symbols=self.report.unmanaged)
        return out

    def _note_untidy(self, symbol: str, cover: Cover) -> None:
        if cover is Cover.UNTIDY and symbol not in self._untidy:
            log.warning("stop_cover_untidy", symbol=symbol)
            self._untidy.add(symbol)
        elif cover is not Cover.UNTIDY:
            self._untidy.discard(symbol)

    # ------------------------------------------------------------------ repeated alerts

    def _repeat_alerts(self, now: int) -> Outbox:
        """Quarantined positions, and naked exposure nobody manages, alert on a period."""
        out: Outbox = []
        due: dict[tuple[str, str], str] = {}
        for symbol, view in self.views.items():
            if view.state is State.QUARANTINED:
                naked = " without a full stop" if registry_naked(view) else ""
                due["quarantined", symbol] = f"{symbol}: position {view.position_id} quarantined"
                due["quarantined", symbol] += f"{naked}; operator attention needed"
        for symbol, ep in self.ladder.episodes.items():
            if ep.rung is Rung.QUARANTINE and ("quarantined", symbol) not in due:
                due["quarantined", symbol] = f"{symbol}: protection ladder exhausted; quarantined"
                self._repeat_at.setdefault(("quarantined", symbol), ep.quarantined_at or now)
            if ep.position_id is None and ep.venue_naked:
                since = self._unmanaged_since.get(symbol, ep.since)
                if now - since >= self.params.grace_ms:
                    due["unmanaged_naked", symbol] = (
                        f"{symbol}: exposure at the venue without a stop that no managed "
                        "position explains"
                    )
        for key in [k for k in self._repeat_at if k not in due]:
            del self._repeat_at[key]
        for (kind, symbol), text in sorted(due.items()):
            last = self._repeat_at.get((kind, symbol))
            if last is not None and now - last < self.params.quarantine_alert_ms:
                continue
            self._repeat_at[kind, symbol] = now
            log.error("protection_alert_repeated", kind=kind, symbol=symbol)
            out.append((ALERTS, Alert(kind, Severity.CRITICAL, symbol, text, now)))
        return out

    def _update_report(self) -> None:
        eps = self.ladder.episodes
        self.report.naked = {s: ep.since for s, ep in eps.items() if ep.naked}
        self.report.rungs = {s: ep.rung.value for s, ep in eps.items() if ep.rung is not None}


__all__ = [
    "Cover",
    "ProtectionCore",
    "ProtectionReport",
    "reference_price",
    "registry_naked",
    "stop_cover",
]
