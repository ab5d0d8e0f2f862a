"""Snapshot and restore of the engine's whole state as JSON-ready data.

The snapshot holds everything that decides future behaviour (config, seed, clock, prices,
accounts, positions, open and retained orders in priority order, fills, id counters, the event
log and bars), so ``from_state(to_state())`` continues exactly as the original engine would:
same ids, same fills, same events. Event ``data`` dicts are shared with the engine, not copied;
treat them as read-only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.sim.accounts import AccountRecord, Position
from adapters.sim.config import EngineConfig
from adapters.sim.instruments import SimInstrument
from adapters.sim.models import Bar, Event, SimFill, SimOrder

if TYPE_CHECKING:
    from adapters.sim.engine import SimEngine

STATE_VERSION = 1

E = TypeVar("E", bound="SimEngine")


def snapshot_state(engine: SimEngine) -> dict[str, Any]:
    engine._last.settle()
    engine._mark.settle()
    return {
        "version": STATE_VERSION,
        "seed": engine.seed,
        "now": engine.now,
        "config": engine.config.to_dict(),
        "instruments": [spec.to_dict() for spec in engine.instruments.values()],
        "last": {s: str(p) for s, p in engine._last.items()},
        "mark": {s: str(p) for s, p in engine._mark.items()},
        "accounts": [record.to_dict() for record in engine._accounts.values()],
        "positions": [pos.to_dict() for pos in engine._positions.values()],
        "orders": [order.to_dict() for order in engine._orders.values()],
        "closed": list(engine._closed),
        "fills": [fill.to_dict() for fill in engine._fills],
        "events": [event.to_dict() for event in engine._events],
        "event_seq": engine._event_seq,
        "counters": dict(engine._counters),
        "bars": {s: [bar.to_list() for bar in bars] for s, bars in engine._bars.items()},
    }


def restore_state(cls: type[E], state: Mapping[str, Any]) -> E:
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported engine state version {state.get('version')!r}")
    specs = [SimInstrument.from_dict(item) for item in state["instruments"]]
    engine = cls(
        instruments={spec.symbol: spec for spec in specs},
        config=EngineConfig.from_dict(state["config"]),
        seed=int(state["seed"]),
        start_ts=int(state["now"]),
    )
    engine._last.reset({s: Decimal(p) for s, p in state["last"].items()})
    engine._mark.reset({s: Decimal(p) for s, p in state["mark"].items()})
    for item in state["accounts"]:
        record = AccountRecord.from_dict(item)
        engine._accounts[record.account_id] = record
    for item in state["positions"]:
        pos = Position.from_dict(item)
        engine._set_position((pos.account_id, pos.symbol), pos)
    orders = [SimOrder.from_dict(item) for item in state["orders"]]
    for order in orders:
        engine._orders[order.order_id] = order
    for order in sorted(orders, key=lambda o: o.priority):
        if order.is_open:
            engine._open[order.symbol][order.order_id] = None
    engine._closed = deque(state["closed"])
    engine._fills = [SimFill.from_dict(item) for item in state["fills"]]
    engine._events = [Event.from_dict(item) for item in state["events"]]
    engine._event_seq = int(state["event_seq"])
    engine._counters = {k: int(v) for k, v in state["counters"].items()}
    engine._bars = {s: [Bar.from_list(row) for row in rows] for s, rows in state["bars"].items()}
    return engine
