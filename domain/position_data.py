"""Values a managed position is made of, and the arithmetic of fills on them.

Kept apart from :mod:`domain.position` (the machine and the events) so each stays small.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from domain.models import Order, OrderRole, OrderUpdate
from domain.position_table import State
from domain.values import fast_init

ZERO = Decimal(0)
CLIENT_ID_PREFIX = "bst"


def client_order_id(position_id: str, role: OrderRole, attempt: int) -> str:
    """Deterministic client order id ``bst-<position>-<role>-<attempt>`` (rule 1)."""
    return f"{CLIENT_ID_PREFIX}-{position_id}-{role.value}-{attempt}"


@functools.lru_cache(maxsize=4096)  # ids come back with every fill and order read
def parse_client_order_id(client_id: str) -> tuple[str, OrderRole, int] | None:
    """Inverse of :func:`client_order_id`; ``None`` for ids Bastion did not make."""
    if not client_id.startswith(CLIENT_ID_PREFIX + "-"):
        return None
    parts = client_id[len(CLIENT_ID_PREFIX) + 1 :].rsplit("-", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    role = _ROLES.get(parts[1])
    if role is None:
        return None
    return parts[0], role, int(parts[2])


_ROLES = {role.value: role for role in OrderRole}


@fast_init
@dataclass(frozen=True, slots=True)
class StopRef:
    """A stop order of this position: in flight (pending) or resting at the exchange."""

    client_id: str
    price: Decimal
    qty: Decimal


@fast_init
@dataclass(frozen=True, slots=True)
class FillRecord:
    """A fill as applied to a position."""

    fill_id: str
    role: OrderRole
    qty: Decimal
    price: Decimal
    ts: int
    fee: Decimal = ZERO
    client_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class PositionData:
    """Everything about a position that events change. Replaced whole, never mutated."""

    entry_filled: Decimal = ZERO
    entry_cost: Decimal = ZERO  # sum of qty * price over entry fills
    exit_filled: Decimal = ZERO
    exit_proceeds: Decimal = ZERO  # sum of qty * price over exit fills
    fees: Decimal = ZERO
    fill_ids: frozenset[str] = frozenset()
    deferred_exits: tuple[FillRecord, ...] = ()  # exit fills seen before the entries they close
    stop_resting: StopRef | None = None
    stop_pending: StopRef | None = None
    exit_client_id: str | None = None
    entry_working: bool = False
    attempts: Mapping[str, int] = field(default_factory=dict)
    quarantine_reason: str = ""
    updated_at: int = 0

    @property
    def remaining(self) -> Decimal:
        """Rule 3: remaining = entry fills - exit fills."""
        return self.entry_filled - self.exit_filled

    @property
    def avg_entry_price(self) -> Decimal | None:
        return self.entry_cost / self.entry_filled if self.entry_filled else None

    @property
    def avg_exit_price(self) -> Decimal | None:
        return self.exit_proceeds / self.exit_filled if self.exit_filled else None


def round_trip_result(
    d: PositionData, *, long: bool, planned_stop: Decimal | None
) -> tuple[Decimal, Decimal | None]:
    """A finished position's realized PnL (fees included) and its R multiple against the planned
    stop (None without a stop or an entry fill). Both are in the settlement currency."""
    pnl = (d.exit_proceeds - d.entry_cost) * (1 if long else -1) - d.fees
    entry = d.avg_entry_price
    risk = abs(entry - planned_stop) * d.entry_filled if planned_stop and entry else None
    return pnl, (pnl / risk if risk else None)


@fast_init
@dataclass(frozen=True, slots=True)
class Change:
    """One committed event: what the store writes in a single transaction."""

    position_id: str
    trigger: str
    source: State | None  # None when the position is created
    dest: State
    version: int  # the position's version after the change
    at: int
    detail: Mapping[str, Any] = field(default_factory=dict)
    orders: tuple[Order, ...] = ()  # new journal rows, written with status "sending"
    order_updates: tuple[OrderUpdate, ...] = ()
    fills: tuple[FillRecord, ...] = ()


def with_entry(d: PositionData, record: FillRecord) -> PositionData:
    """Add an entry fill, then settle exit fills that were waiting for it, in arrival order."""
    nxt = replace(
        d,
        entry_filled=d.entry_filled + record.qty,
        entry_cost=d.entry_cost + record.qty * record.price,
        fees=d.fees + record.fee,
        fill_ids=d.fill_ids | {record.fill_id},
    )
    waiting, nxt = nxt.deferred_exits, replace(nxt, deferred_exits=())
    for held in waiting:
        nxt = with_exit(nxt, held, already_seen=True)
    return nxt


def with_exit(d: PositionData, record: FillRecord, *, already_seen: bool = False) -> PositionData:
    """Add an exit fill; one larger than the known exposure waits for its entry fills."""
    ids = d.fill_ids if already_seen else d.fill_ids | {record.fill_id}
    if record.qty > d.remaining:
        return replace(d, fill_ids=ids, deferred_exits=(*d.deferred_exits, record))
    nxt = replace(
        d,
        exit_filled=d.exit_filled + record.qty,
        exit_proceeds=d.exit_proceeds + record.qty * record.price,
        fees=d.fees + record.fee,
        fill_ids=ids,
    )
    if record.role is OrderRole.STOP:
        nxt = replace(
            nxt,
            stop_resting=_shrink(nxt.stop_resting, record),
            stop_pending=_shrink(nxt.stop_pending, record),
        )
    return nxt


def _shrink(stop: StopRef | None, record: FillRecord) -> StopRef | None:
    """A stop's open quantity after one of its own fills."""
    if stop is None or stop.client_id != record.client_id:
        return stop
    left = stop.qty - record.qty
    return replace(stop, qty=left) if left > 0 else None
