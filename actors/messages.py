"""Every message actors exchange: frozen dataclasses, no shared mutable state (ARCHITECTURE 2).

The market-data events (``CandleClosed``, ``MarkPrice``, ``FeedStale``, ``FeedFresh``) are the
feed client's own and are re-exported here, so the feed's output is delivered as it is.

Flow: feed -> CandleClosed/MarkPrice/FeedStale/FeedFresh -> analyzers -> SignalProposed ->
allocator -> OpenApproved -> risk -> PlaceIntent -> execution; execution -> PositionChanged and
TradeClosed -> allocator, risk, protection; protection -> EnsureStop/Flatten/Quarantine ->
execution; execution -> OrderOutcome (stops and exits) -> protection; protection -> Alert -> alerts;
protection (ladder exhausted) and control -> KillSwitchChanged -> risk, execution. Timers send Tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from adapters.marketdata.events import CandleClosed, FeedFresh, FeedStale, MarkPrice
from domain.models import Order, OrderIntent, OrderRole, PositionSide, Signal
from domain.position_data import round_trip_result
from domain.position_table import State
from domain.values import fast_init

if TYPE_CHECKING:
    from domain.position import Position


@fast_init
@dataclass(frozen=True, slots=True)
class Tick:
    """A timer beat; ``now`` in ms."""

    now: int


@fast_init
@dataclass(frozen=True, slots=True)
class AccountEquity:
    """An account reading for allocator and risk: equity and the venue's used margin (if known);
    the rest (when known) is recorded in the history's account snapshots."""

    equity: Decimal
    ts: int
    used_margin: Decimal | None = None
    available_margin: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    exposure: Decimal | None = None  # sum of |qty x entry price| over managed positions


@fast_init
@dataclass(frozen=True, slots=True)
class SignalProposed:
    """An analyzer's signal for one closed bar."""

    signal: Signal
    bar_time: int  # open time of the bar whose close produced it


@fast_init
@dataclass(frozen=True, slots=True)
class OpenApproved:
    """The auction gave this signal a slot; risk sizes it (or refuses, with a reason)."""

    signal: Signal
    reasons: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class CloseRequested:
    """Close one position (auction swap, operator, flatten)."""

    symbol: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class PlaceIntent:
    """A sized, risk-approved entry for execution."""

    intent: OrderIntent


@fast_init
@dataclass(frozen=True, slots=True)
class PositionView:
    """A read-only summary of one managed position, for other actors and operators."""

    position_id: str
    symbol: str
    side: PositionSide
    state: State
    qty: Decimal
    entry_price: Decimal | None
    stop_price: Decimal | None
    stop_qty: Decimal
    strategy: str
    origin: str
    created_at: int
    updated_at: int
    score: float = 0.0


@fast_init
@dataclass(frozen=True, slots=True)
class PositionChanged:
    view: PositionView


@fast_init
@dataclass(frozen=True, slots=True)
class TradeClosed:
    """A position reached a terminal state; PnL in the settlement currency, fees included."""

    position_id: str
    symbol: str
    pnl: Decimal
    r_multiple: float | None
    closed_at: int

    @classmethod
    def of(cls, pos: Position, at: int) -> TradeClosed:
        """The result of a finished position; R against its planned stop, when it had one."""
        pnl, r_multiple = round_trip_result(
            pos.data, long=pos.side is PositionSide.LONG, planned_stop=pos.planned_stop
        )
        return cls(
            pos.id, pos.symbol, pnl, float(r_multiple) if r_multiple is not None else None, at
        )


class StopVariant(StrEnum):
    """Which stop the protection ladder asks for."""

    NORMAL = "normal"  # the position's own stop price, the venue's default trigger signal
    OTHER_TRIGGER = "other_trigger"  # the same price on the other trigger signal (mark vs last)
    WIDENED = "widened"  # a price beyond the current mark (the venue said "would trigger now")


@dataclass(frozen=True, slots=True)
class EnsureStop:
    """Protection found an exposed position without a correct resting stop: place one.

    ``trigger_signal`` (``"last"``/``"mark"``; None: the adapter's default) and ``price`` (None:
    the position's own stop price) carry the ladder's alternative variants. Execution places at
    most one stop per command and answers with an :class:`OrderOutcome`.
    """

    symbol: str
    reason: str
    variant: StopVariant = StopVariant.NORMAL
    trigger_signal: str | None = None
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Flatten:
    """Close exposure with reduce-only market orders: one symbol, or all when ``symbol`` is None.

    ``force``: sent by the protection ladder, which paces and caps its own attempts, so
    execution's back-off and attempt cap for ordinary closes do not apply.
    """

    symbol: str | None
    reason: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Quarantine:
    """The protection ladder is exhausted: quarantine the symbol's position for an operator."""

    symbol: str
    reason: str


class Outcome(StrEnum):
    """What became of a protective order (a stop, or an exit sent to flatten)."""

    ACKED = "acked"  # the venue accepted it
    REJECTED = "rejected"  # refused (definitively, or temporarily: rate limit), nothing working
    UNKNOWN = "unknown"  # no clear answer: resolved by client id, never re-sent meanwhile
    IN_FLIGHT = "in_flight"  # not sent: an earlier order of the same role is still unresolved
    SKIPPED = "skipped"  # not sent: nothing to do, or the position refused it (``reason``)


@fast_init
@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """Execution tells protection how a stop or exit attempt went (automatic or commanded)."""

    symbol: str
    position_id: str
    role: OrderRole
    client_id: str
    outcome: Outcome
    reason: str
    at: int
    price: Decimal | None = None
    trigger_signal: str | None = None

    @classmethod
    def of(cls, order: Order, outcome: Outcome, reason: str, at: int) -> OrderOutcome:
        """The outcome of sending ``order`` (a stop's trigger price and signal included)."""
        return cls(
            order.symbol,
            order.position_id or "",
            order.role,
            order.client_id,
            outcome,
            reason,
            at,
            order.trigger_price,
            order.trigger_signal,
        )


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator should hear about (the alerts actor logs and relays it)."""

    kind: str
    severity: Severity
    symbol: str | None
    text: str
    at: int


@dataclass(frozen=True, slots=True)
class ReconcileSoon:
    """Protection saw exposure no managed position explains: reconcile on the next beat."""

    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class StopEntries:
    """Shutdown has begun: no new entries (the kill-switch latch is left as it is)."""

    reason: str


@dataclass(frozen=True, slots=True)
class KillSwitchChanged:
    latched: bool
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class Audit:
    """A decision or action for the audit trail (``history``), e.g. a refused signal.

    ``kind`` is a :class:`persistence.history.models.EventKind` value; ``payload`` holds
    JSON-safe values only and is never changed after sending. ``event_id`` (None: derived from
    the content by the writer) makes the event recognisable when replayed.
    """

    kind: str
    reason_code: str | None
    at: int
    symbol: str | None = None
    position_id: str | None = None
    who: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Ask (with a timeout, from outside the pipeline only) for an actor's current view."""


__all__ = [
    "AccountEquity",
    "Alert",
    "Audit",
    "CandleClosed",
    "CloseRequested",
    "EnsureStop",
    "FeedFresh",
    "FeedStale",
    "Flatten",
    "KillSwitchChanged",
    "MarkPrice",
    "OpenApproved",
    "OrderOutcome",
    "Outcome",
    "PlaceIntent",
    "PositionChanged",
    "PositionView",
    "Quarantine",
    "ReconcileSoon",
    "Severity",
    "SignalProposed",
    "SnapshotRequest",
    "StopEntries",
    "StopVariant",
    "Tick",
    "TradeClosed",
]
