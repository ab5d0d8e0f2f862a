"""The auction allocator: which new signals to open and which open positions to give up.

Contenders are new signals (:class:`SignalBid`) and open positions (:class:`PositionBid`).
Values: a signal is worth ``score - entry_cost``; a position ``entry_score + pnl_weight * pnl_r -
exit_cost`` (``pnl_r`` is its open PnL in units of its initial risk). Decisions:

- Positions are never closed just for being weak; they are only swapped out for a newcomer.
  A position that is young (``now - opened_at < min_hold_ms``), unprotected (no resting stop)
  or has an order in flight is locked: kept, never swapped.
- Signals are taken greedily, best value first; ties break on the symbol. A signal whose value is
  not positive, that has expired, whose symbol already has a position (a close must fill before
  a reversal can open) or that lost to a better signal for the same symbol is rejected.
- A signal is opened when it fits every constraint with the book as it stands: at most
  ``max_positions`` positions; total margin at most ``auction_max_margin_util`` of equity; at most
  ``max_per_cluster`` positions per cluster (a bid without a cluster is its own cluster); the net
  count ``longs - shorts`` at most ``max_net_long`` and ``shorts - longs`` at most
  ``max_net_short``; at most ``max_opens_per_cycle`` opens.
- If it does not fit, the weakest unlocked incumbent whose removal would make it fit is swapped
  out, but only if the newcomer's value beats that incumbent's by more than ``swap_threshold``
  (hysteresis, so near-equal contenders do not churn) and fewer than ``max_closes_per_cycle``
  closes were decided. Positions opened in this cycle are never swapped out in the same cycle.
- The result does not depend on the order of the inputs; every decision carries reason codes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.errors import DomainError
from domain.models import PositionSide, Signal
from domain.params import params_from_mapping
from domain.values import fast_init


class AllocationConfigError(DomainError):
    """Allocator parameters that do not fit."""


@dataclass(frozen=True, slots=True)
class AllocatorParams:
    """Allocator parameters; the first nine are the ``allocator`` config section, one to one.

    ``auction_max_margin_util`` (0.35): margin of all positions / equity. ``max_positions`` (4).
    ``swap_threshold`` (0.25): value margin a newcomer needs over an incumbent to replace it.
    ``max_opens_per_cycle`` (2), ``max_closes_per_cycle`` (1), ``max_per_cluster`` (2),
    ``max_net_long`` (3), ``max_net_short`` (3): see the module docstring.
    ``collect_window_ms`` (2000): how long the actor gathers signals before an auction (unused
    here). Not yet in the config section: ``pnl_weight`` (0.1): value per R of open PnL (``k``);
    ``min_hold_ms`` (900000): age below which a position is locked.
    """

    auction_max_margin_util: float = 0.35
    max_positions: int = 4
    swap_threshold: float = 0.25
    max_opens_per_cycle: int = 2
    max_closes_per_cycle: int = 1
    max_per_cluster: int = 2
    max_net_long: int = 3
    max_net_short: int = 3
    collect_window_ms: int = 2000
    pnl_weight: float = 0.1
    min_hold_ms: int = 15 * 60_000

    def __post_init__(self) -> None:
        if not 0 < self.auction_max_margin_util < 1:
            raise AllocationConfigError("auction_max_margin_util must be in (0, 1)")
        if min(self.max_positions, self.max_opens_per_cycle, self.max_per_cluster) < 1:
            raise AllocationConfigError("max_positions, max_opens_per_cycle, max_per_cluster >= 1")
        if min(self.max_closes_per_cycle, self.max_net_long, self.max_net_short) < 0:
            raise AllocationConfigError("closes per cycle and net caps must not be negative")
        if self.swap_threshold < 0 or self.min_hold_ms < 0 or self.collect_window_ms < 0:
            raise AllocationConfigError("swap_threshold, min_hold_ms, collect_window_ms >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AllocatorParams:
        """From a config mapping (``settings.allocator.model_dump()``); unknown keys refused."""
        return params_from_mapping(cls, values, AllocationConfigError, "allocator")


@fast_init
@dataclass(frozen=True, slots=True)
class SignalBid:
    """A new signal in the auction. ``margin`` is what it would use once sized by risk;
    ``entry_cost`` (fees, spread) is in score units."""

    signal: Signal
    margin: Decimal
    entry_cost: float = 0.0
    cluster: str = ""

    @property
    def symbol(self) -> str:
        return self.signal.symbol

    @property
    def value(self) -> float:
        return self.signal.score - self.entry_cost


@fast_init
@dataclass(frozen=True, slots=True)
class PositionBid:
    """An open position defending its place; ``exit_cost`` is in score units."""

    position_id: str
    symbol: str
    side: PositionSide
    entry_score: float
    pnl_r: float
    margin: Decimal
    opened_at: int
    protected: bool = True
    in_flight: bool = False
    exit_cost: float = 0.0
    cluster: str = ""

    def value(self, pnl_weight: float) -> float:
        return self.entry_score + pnl_weight * self.pnl_r - self.exit_cost


class Action(StrEnum):
    OPEN = "open"
    KEEP = "keep"
    CLOSE = "close"
    REJECT = "reject"


class AllocReason(StrEnum):
    """Why a contender got its action (ends up in the audit log)."""

    SELECTED = "selected"
    SWAP_IN = "swap_in"
    SWAPPED_OUT = "swapped_out"
    INCUMBENT = "incumbent"
    LOCKED_YOUNG = "locked_young"
    LOCKED_UNPROTECTED = "locked_unprotected"
    LOCKED_IN_FLIGHT = "locked_in_flight"
    EXPIRED = "expired"
    NON_POSITIVE_VALUE = "non_positive_value"
    DUPLICATE_SYMBOL = "duplicate_symbol"
    SYMBOL_HELD = "symbol_held"
    MAX_POSITIONS = "max_positions"
    MARGIN_CAP = "margin_cap"
    CLUSTER_CAP = "cluster_cap"
    NET_LONG_CAP = "net_long_cap"
    NET_SHORT_CAP = "net_short_cap"
    OPENS_PER_CYCLE = "opens_per_cycle"
    CLOSES_PER_CYCLE = "closes_per_cycle"
    SWAP_BELOW_THRESHOLD = "swap_below_threshold"


_ACTION_ORDER = {Action.OPEN: 0, Action.CLOSE: 1, Action.KEEP: 2, Action.REJECT: 3}


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """One contender's outcome."""

    action: Action
    symbol: str
    value: float
    reasons: tuple[AllocReason, ...]
    detail: str = ""
    signal: Signal | None = None
    position_id: str | None = None

    @property
    def sort_key(self) -> tuple[int, str, str, str]:
        strategy = self.signal.strategy if self.signal else ""
        return (_ACTION_ORDER[self.action], self.symbol, self.position_id or "", strategy)


@fast_init
@dataclass(frozen=True, slots=True)
class Allocation:
    """The auction's result: every contender's decision, in a canonical order."""

    decisions: tuple[Decision, ...]

    def of(self, action: Action) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.action is action)

    @property
    def opens(self) -> tuple[Signal, ...]:
        return tuple(d.signal for d in self.of(Action.OPEN) if d.signal is not None)

    @property
    def closes(self) -> tuple[str, ...]:
        return tuple(d.position_id for d in self.of(Action.CLOSE) if d.position_id is not None)


def _sign(side: PositionSide) -> int:
    return 1 if side is PositionSide.LONG else -1


@fast_init
@dataclass(frozen=True, slots=True)
class _Slot:
    """What a contender occupies in the book."""

    symbol: str
    sign: int
    cluster: str  # a bid without a cluster is its own cluster
    margin: Decimal

    @classmethod
    def of(cls, symbol: str, side: PositionSide, cluster: str, margin: Decimal) -> _Slot:
        return cls(symbol, _sign(side), cluster or f"symbol:{symbol}", margin)


class _Book:
    """The positions as the auction has decided so far, with running totals."""

    def __init__(self, equity: Decimal, params: AllocatorParams) -> None:
        self.params = params
        self.margin_cap = equity * Decimal(repr(params.auction_max_margin_util))
        self.count = 0
        self.margin = Decimal(0)
        self.net = 0
        self.clusters: Counter[str] = Counter()
        self.symbols: set[str] = set()

    def add(self, slot: _Slot, k: int = 1) -> None:
        """Add (``k=1``) or remove (``k=-1``) a slot."""
        self.count += k
        self.margin += k * slot.margin
        self.net += k * slot.sign
        self.clusters[slot.cluster] += k
        if k > 0:
            self.symbols.add(slot.symbol)
        else:
            self.symbols.discard(slot.symbol)

    def violations(self, new: _Slot, without: _Slot | None = None) -> list[AllocReason]:
        """The constraints ``new`` would break, with ``without`` removed from the book."""
        p = self.params
        count, margin, net = self.count + 1, self.margin + new.margin, self.net + new.sign
        in_cluster = self.clusters[new.cluster] + 1
        if without is not None:
            count -= 1
            margin -= without.margin
            net -= without.sign
            in_cluster -= without.cluster == new.cluster
        found = []
        if count > p.max_positions:
            found.append(AllocReason.MAX_POSITIONS)
        if margin > self.margin_cap:
            found.append(AllocReason.MARGIN_CAP)
        if in_cluster > p.max_per_cluster:
            found.append(AllocReason.CLUSTER_CAP)
        if net > p.max_net_long:
            found.append(AllocReason.NET_LONG_CAP)
        if -net > p.max_net_short:
            found.append(AllocReason.NET_SHORT_CAP)
        return found

    def one_swap_may_help(self, new: _Slot) -> bool:
        """False when removing any single position still leaves a count constraint broken."""
        p = self.params
        net = self.net + new.sign
        return (
            self.count <= p.max_positions
            and self.clusters[new.cluster] <= p.max_per_cluster
            and net - 1 <= p.max_net_long
            and -net - 1 <= p.max_net_short
        )


def _locks(pos: PositionBid, now_ms: int, params: AllocatorParams) -> tuple[AllocReason, ...]:
    locks = []
    if now_ms - pos.opened_at < params.min_hold_ms:
        locks.append(AllocReason.LOCKED_YOUNG)
    if not pos.protected:
        locks.append(AllocReason.LOCKED_UNPROTECTED)
    if pos.in_flight:
        locks.append(AllocReason.LOCKED_IN_FLIGHT)
    return tuple(locks)


def _signal_key(bid: SignalBid) -> tuple[Any, ...]:
    """Best value first; ties on stable fields of the bid (input order never matters)."""
    s = bid.signal
    return (
        -bid.value,
        s.symbol,
        s.strategy,
        s.side.value,
        s.created_at,
        s.timeframe,
        s.entry_price,
        s.stop_price,
        s.targets,
        bid.margin,
        bid.cluster,
        s.reasons,
        s.expires_at,
    )


def allocate(
    signals: Iterable[SignalBid],
    positions: Iterable[PositionBid],
    equity: Decimal,
    now_ms: int,
    params: AllocatorParams,
) -> Allocation:
    """Run one auction cycle (see the module docstring)."""
    k = params.pnl_weight
    held = sorted(positions, key=lambda p: (p.position_id, p.symbol))
    book = _Book(equity, params)
    slots = {p.position_id: _Slot.of(p.symbol, p.side, p.cluster, p.margin) for p in held}
    values = {p.position_id: p.value(k) for p in held}
    for slot in slots.values():
        book.add(slot)
    locked = {pos.position_id: _locks(pos, now_ms, params) for pos in held}
    swappable = sorted(
        (pos for pos in held if not locked[pos.position_id]),
        key=lambda p: (values[p.position_id], p.position_id),
    )
    decisions: list[Decision] = []
    closed: set[str] = set()

    def reject(bid: SignalBid, reasons: list[AllocReason], detail: str = "") -> None:
        decisions.append(
            Decision(Action.REJECT, bid.symbol, bid.value, tuple(reasons), detail, bid.signal)
        )

    seen_symbols: set[str] = set()
    opens = 0
    for bid in sorted(signals, key=_signal_key):
        if bid.symbol in seen_symbols:
            reject(
                bid, [AllocReason.DUPLICATE_SYMBOL], "a better signal for this symbol ranks first"
            )
            continue
        seen_symbols.add(bid.symbol)
        if bid.signal.expires_at <= now_ms:
            reject(bid, [AllocReason.EXPIRED])
            continue
        if bid.value <= 0:
            reject(bid, [AllocReason.NON_POSITIVE_VALUE])
            continue
        if bid.symbol in book.symbols:
            reject(bid, [AllocReason.SYMBOL_HELD])
            continue
        if opens >= params.max_opens_per_cycle:
            reject(bid, [AllocReason.OPENS_PER_CYCLE])
            continue
        new = _Slot.of(bid.symbol, bid.signal.side, bid.cluster, bid.margin)
        blocked = book.violations(new)
        if not blocked:
            book.add(new)
            opens += 1
            decisions.append(
                Decision(
                    Action.OPEN, bid.symbol, bid.value, (AllocReason.SELECTED,), "", bid.signal
                )
            )
            continue
        if len(closed) >= params.max_closes_per_cycle:
            reject(bid, [*blocked, AllocReason.CLOSES_PER_CYCLE])
            continue
        victims = [p for p in swappable if p.position_id not in closed]
        victim = next((p for p in victims if not book.violations(new, slots[p.position_id])), None)
        if victim is None:
            reject(bid, blocked)
            continue
        if bid.value <= values[victim.position_id] + params.swap_threshold:
            reject(
                bid,
                [*blocked, AllocReason.SWAP_BELOW_THRESHOLD],
                f"value {bid.value:.4f} does not beat {victim.position_id} "
                f"({values[victim.position_id]:.4f}) by more than {params.swap_threshold}",
            )
            continue
        closed.add(victim.position_id)
        book.add(slots[victim.position_id], k=-1)
        book.add(new)
        opens += 1
        decisions.append(
            Decision(
                Action.CLOSE,
                victim.symbol,
                values[victim.position_id],
                (AllocReason.SWAPPED_OUT,),
                f"replaced by {bid.symbol} ({bid.value:.4f})",
                position_id=victim.position_id,
            )
        )
        decisions.append(
            Decision(
                Action.OPEN,
                bid.symbol,
                bid.value,
                (AllocReason.SWAP_IN, *blocked),
                f"replaces {victim.position_id} ({values[victim.position_id]:.4f})",
                bid.signal,
            )
        )
    for pos in held:
        if pos.position_id not in closed:
            reasons = locked[pos.position_id] or (AllocReason.INCUMBENT,)
            decisions.append(
                Decision(
                    Action.KEEP,
                    pos.symbol,
                    values[pos.position_id],
                    reasons,
                    position_id=pos.position_id,
                )
            )
    return Allocation(tuple(sorted(decisions, key=lambda d: d.sort_key)))
