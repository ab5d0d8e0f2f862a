"""Every message actors exchange: frozen dataclasses, no shared mutable state (ARCHITECTURE 2).

The market-data events (``CandleClosed``, ``MarkPrice``, ``FeedStale``, ``FeedFresh``) are the
feed client's own and are re-exported here, so the feed's output is delivered as it is.

Flow: feed -> CandleClosed/MarkPrice/FeedStale/FeedFresh -> analyzers -> SignalProposed ->
allocator -> OpenApproved -> risk -> PlaceIntent -> execution; execution -> PositionChanged and
TradeClosed -> allocator, risk, protection; protection -> EnsureStop/Flatten -> execution;
control -> KillSwitchChanged -> risk, execution. Timers send Tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from adapters.marketdata.events import CandleClosed, FeedFresh, FeedStale, MarkPrice
from domain.models import OrderIntent, PositionSide, Signal
from domain.position_table import State


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer beat; ``now`` in ms."""

    now: int


@dataclass(frozen=True, slots=True)
class AccountEquity:
    """An account reading for allocator and risk: equity and the venue's used margin (if known)."""

    equity: Decimal
    ts: int
    used_margin: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SignalProposed:
    """An analyzer's signal for one closed bar."""

    signal: Signal
    bar_time: int  # open time of the bar whose close produced it


@dataclass(frozen=True, slots=True)
class OpenApproved:
    """The auction gave this signal a slot; risk sizes it (or refuses, with a reason)."""

    signal: Signal
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CloseRequested:
    """Close one position (auction swap, operator, flatten)."""

    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlaceIntent:
    """A sized, risk-approved entry for execution."""

    intent: OrderIntent


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


@dataclass(frozen=True, slots=True)
class PositionChanged:
    view: PositionView


@dataclass(frozen=True, slots=True)
class TradeClosed:
    """A position reached a terminal state; PnL in the settlement currency, fees included."""

    position_id: str
    symbol: str
    pnl: Decimal
    r_multiple: float | None
    closed_at: int


@dataclass(frozen=True, slots=True)
class EnsureStop:
    """Protection found an exposed position without a correct resting stop."""

    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Flatten:
    """Close exposure with reduce-only market orders: one symbol, or all when ``symbol`` is None."""

    symbol: str | None
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
class SnapshotRequest:
    """Ask (with a timeout, from outside the pipeline only) for an actor's current view."""


__all__ = [
    "AccountEquity",
    "CandleClosed",
    "CloseRequested",
    "EnsureStop",
    "FeedFresh",
    "FeedStale",
    "Flatten",
    "KillSwitchChanged",
    "MarkPrice",
    "OpenApproved",
    "PlaceIntent",
    "PositionChanged",
    "PositionView",
    "SignalProposed",
    "SnapshotRequest",
    "StopEntries",
    "Tick",
    "TradeClosed",
]
