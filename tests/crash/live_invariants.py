"""The invariants the live crash harness checks at the emulator after every restart.

Pure functions over plain views, so they can be tested on hand-made states:

- :class:`ExchangeView`: the account's positions, open orders and mark prices, from the
  emulator's ``GET /_sim/state``;
- :class:`RegistryEntry`: Bastion's live positions, from ``<data_dir>/live/positions.db``;
- the emulator's order and fill history (its persisted state) for duplicates.

State invariants (:func:`check_state`; they may be violated for a moment while Bastion works,
so the harness polls them until they hold or a deadline passes):

- ``naked`` / ``stop_chaos``: every exchange position has exactly one open stop order, and it is
  reduce-only, on the exit side, for the position's whole size, with its trigger on the loss side
  of the mark price;
- ``not_in_registry`` / ``registry_mismatch``: every exchange position is a live registry position
  on that symbol with the same side and remaining quantity;
- ``stop_not_tracked``: the stop resting at the exchange is the one the registry believes rests;
- ``phantom`` / ``stale_pending``: no live registry position on a symbol that is flat at the
  exchange, except a pending one whose entry order is working there;
- ``orphan_stop`` / ``orphan_order``: no stop on a flat symbol, no open Bastion order (``bst-``)
  of a position that is not live;
- ``registry_duplicate``: at most one live registry position per symbol.

History invariants (:func:`check_history`; permanent facts, checked once):

- ``duplicate_client_id``: no two orders ever accepted by the venue share a client order id;
- ``duplicate_fill_client_id``: no client id has fills from two different venue orders;
- ``duplicate_entry``: no Bastion position got fills from more than one entry order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.sim.instruments import unified_symbol
from domain.models import OrderRole
from domain.position_data import parse_client_order_id
from persistence.store import PositionStore

ZERO = Decimal(0)
STOP_KIND = "stp"


@dataclass(frozen=True, slots=True)
class Finding:
    """One invariant violation: its kind, the symbol (or client id) and what differed."""

    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class ExOrder:
    """An open order at the emulator (unified symbol, open quantity)."""

    order_id: str
    cli_ord_id: str | None
    symbol: str
    side: str
    kind: str
    open_qty: Decimal
    reduce_only: bool
    stop_price: Decimal | None

    def describe(self) -> str:
        trigger = f" @{self.stop_price}" if self.stop_price is not None else ""
        ro = " ro" if self.reduce_only else ""
        return f"{self.kind} {self.side} {self.open_qty}{trigger}{ro} [{self.cli_ord_id}]"


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """One account at the emulator: signed position sizes, open orders, mark prices."""

    positions: Mapping[str, Decimal]
    orders: tuple[ExOrder, ...]
    marks: Mapping[str, Decimal]

    def key(self) -> tuple[Any, ...]:
        """What must not change between two reads for a registry read in between to be
        comparable with them (marks excluded: they move all the time)."""
        return (
            tuple(sorted(self.positions.items())),
            tuple(sorted((o.order_id, o.open_qty, o.stop_price) for o in self.orders)),
        )


def exchange_view(state: Mapping[str, Any], api_key: str) -> ExchangeView:
    """The view of the account of ``api_key`` in a ``GET /_sim/state`` answer."""
    account = next(a for a in state["accounts"] if a["api_key"] == api_key)
    positions = {
        unified_symbol(p["symbol"]): Decimal(p["qty"])
        for p in account["positions"]
        if Decimal(p["qty"]) != 0
    }
    orders = tuple(
        ExOrder(
            order_id=o["order_id"],
            cli_ord_id=o.get("cli_ord_id"),
            symbol=unified_symbol(o["symbol"]),
            side=o["side"],
            kind=o["kind"],
            open_qty=Decimal(o["qty"]) - Decimal(o["filled"]),
            reduce_only=bool(o["reduce_only"]),
            stop_price=Decimal(o["stop_price"]) if o.get("stop_price") is not None else None,
        )
        for o in account["open_orders"]
    )
    marks = {unified_symbol(s): Decimal(p["mark"]) for s, p in state["prices"].items()}
    return ExchangeView(positions, orders, marks)


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A live (non-terminal) position of Bastion's registry."""

    position_id: str
    symbol: str
    side: str  # "long" | "short"
    state: str
    remaining: Decimal
    stop_client_id: str | None
    entry_client_id: str
    origin: str


def read_registry(db: Path) -> list[RegistryEntry]:
    """Bastion's live positions, read-only (works while Bastion runs)."""
    with PositionStore.open(db, readonly=True) as store:
        positions = store.load_active()
    out = []
    for pos in positions:
        stop = pos.data.stop_resting
        out.append(
            RegistryEntry(
                position_id=pos.id,
                symbol=pos.symbol,
                side=pos.side.value,
                state=pos.current.value,
                remaining=pos.remaining,
                stop_client_id=stop.client_id if stop is not None else None,
                entry_client_id=pos.entry_client_id,
                origin=pos.origin.value,
            )
        )
        pos.discard()  # leave the shared state machine as it was
    return out


def _correct_stop(order: ExOrder, qty: Decimal, mark: Decimal | None) -> bool:
    """Reduce-only, exit side, the position's whole size, trigger on the loss side of mark."""
    exit_side = "sell" if qty > 0 else "buy"
    if not order.reduce_only or order.side != exit_side or order.open_qty != abs(qty):
        return False
    if order.stop_price is None or mark is None:
        return False
    return order.stop_price < mark if qty > 0 else order.stop_price > mark


def check_state(ex: ExchangeView, registry: Sequence[RegistryEntry]) -> list[Finding]:
    """Every state invariant over one consistent pair of views (see the module docstring)."""
    findings: list[Finding] = []
    by_symbol: dict[str, list[RegistryEntry]] = defaultdict(list)
    for entry in registry:
        by_symbol[entry.symbol].append(entry)
    live_ids = {e.position_id for e in registry}
    symbols = sorted(set(ex.positions) | set(by_symbol) | {o.symbol for o in ex.orders})
    for symbol in symbols:
        qty = ex.positions.get(symbol, ZERO)
        stops = [o for o in ex.orders if o.symbol == symbol and o.kind == STOP_KIND]
        entries = by_symbol.get(symbol, [])
        if len(entries) > 1:
            ids = ", ".join(f"{e.position_id}:{e.state}" for e in entries)
            findings.append(Finding("registry_duplicate", symbol, ids))
        if qty != 0:
            findings.extend(_check_exposed(ex, symbol, qty, stops, entries))
        else:
            findings.extend(_check_flat(ex, symbol, stops, entries))
    for order in ex.orders:
        parsed = parse_client_order_id(order.cli_ord_id or "")
        if parsed is not None and parsed[0] not in live_ids:
            findings.append(
                Finding("orphan_order", order.symbol, f"{order.describe()}: position not live")
            )
    return findings


def _check_exposed(
    ex: ExchangeView,
    symbol: str,
    qty: Decimal,
    stops: list[ExOrder],
    entries: list[RegistryEntry],
) -> list[Finding]:
    findings: list[Finding] = []
    mark = ex.marks.get(symbol)
    good = [o for o in stops if _correct_stop(o, qty, mark)]
    known = "; registry: " + (
        ", ".join(f"{e.position_id} {e.state} {e.remaining}" for e in entries) or "none"
    )
    if not stops:
        findings.append(Finding("naked", symbol, f"position {qty}, no stop (mark {mark}){known}"))
    elif len(stops) != 1 or len(good) != 1:
        listed = "; ".join(o.describe() for o in stops)
        findings.append(
            Finding("stop_chaos", symbol, f"position {qty}, mark {mark}: {listed}{known}")
        )
    side = "long" if qty > 0 else "short"
    if not entries:
        findings.append(Finding("not_in_registry", symbol, f"exchange position {qty}"))
        return findings
    entry = entries[0]
    if entry.side != side or entry.remaining != abs(qty):
        findings.append(
            Finding(
                "registry_mismatch",
                symbol,
                f"exchange {side} {abs(qty)}, registry {entry.position_id} {entry.side} "
                f"{entry.remaining} ({entry.state}, {entry.origin})",
            )
        )
    elif len(good) == 1 and len(stops) == 1 and entry.stop_client_id != good[0].cli_ord_id:
        findings.append(
            Finding(
                "stop_not_tracked",
                symbol,
                f"exchange stop {good[0].cli_ord_id}, registry {entry.position_id} believes "
                f"{entry.stop_client_id} ({entry.state})",
            )
        )
    return findings


def _check_flat(
    ex: ExchangeView, symbol: str, stops: list[ExOrder], entries: list[RegistryEntry]
) -> list[Finding]:
    findings: list[Finding] = []
    for order in stops:
        findings.append(Finding("orphan_stop", symbol, f"flat at the exchange: {order.describe()}"))
    working = {o.cli_ord_id for o in ex.orders if o.symbol == symbol}
    for entry in entries:
        what = f"{entry.position_id} {entry.side} {entry.remaining} ({entry.state}, {entry.origin})"
        if entry.remaining > 0:
            findings.append(Finding("phantom", symbol, f"flat at the exchange, registry {what}"))
        elif entry.entry_client_id not in working:
            findings.append(
                Finding("stale_pending", symbol, f"flat, no entry working, registry {what}")
            )
    return findings


def check_history(
    orders: Iterable[Mapping[str, Any]], fills: Iterable[Mapping[str, Any]], account_id: str
) -> list[Finding]:
    """Duplicates in the venue's order and fill history of one account (engine state dicts)."""
    findings: list[Finding] = []
    by_client: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for order in orders:
        if order["account_id"] == account_id and order.get("cli_ord_id"):
            by_client[order["cli_ord_id"]].append(order)
    for cid, same in sorted(by_client.items()):
        if len(same) > 1:
            listed = "; ".join(
                f"{o['order_id'][:8]} {o['kind']} {o['side']} {o['qty']} filled {o['filled']} "
                f"{o['state']}"
                for o in same
            )
            findings.append(Finding("duplicate_client_id", cid, listed))
    fill_orders: dict[str, set[str]] = defaultdict(set)
    entry_orders: dict[str, set[str]] = defaultdict(set)
    for fill in fills:
        cid = fill.get("cli_ord_id")
        if fill["account_id"] != account_id or not cid:
            continue
        fill_orders[cid].add(fill["order_id"])
        parsed = parse_client_order_id(cid)
        if parsed is not None and parsed[1] is OrderRole.ENTRY:
            entry_orders[parsed[0]].add(cid)
    for cid, order_ids in sorted(fill_orders.items()):
        if len(order_ids) > 1:
            findings.append(
                Finding("duplicate_fill_client_id", cid, f"fills from {len(order_ids)} orders")
            )
    for position_id, cids in sorted(entry_orders.items()):
        if len(cids) > 1:
            findings.append(Finding("duplicate_entry", position_id, ", ".join(sorted(cids))))
    return findings


__all__ = [
    "ExOrder",
    "ExchangeView",
    "Finding",
    "RegistryEntry",
    "check_history",
    "check_state",
    "exchange_view",
    "read_registry",
]
