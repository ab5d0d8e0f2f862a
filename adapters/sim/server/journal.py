"""Engine deltas for the write-ahead journal of the emulator's state.

A delta holds everything that changed in the engine since the previous delta or snapshot, in a
size proportional to that change, never to the history:

- every version of an order the engine stored, **in the order it stored them** (replayed through
  the engine's own ``_store`` so the open book, the closed-order queue and its retention end up
  exactly as in the live engine; the last version alone would not, e.g. an order accepted and
  filled within one request must enter and leave the open book to be queued as closed);
- the fills appended since (fills are append-only);
- the events appended since plus the first retained event's ``seq`` (trimming of the bounded
  event log is reproduced by dropping older events, whatever rule trimmed them);
- the small, bounded parts whole: clock, last and mark prices, accounts, positions, id counters.

Bars are not journaled: they go with the periodic snapshot (``bars.json``), as before.
Applying the deltas in order to the snapshot's engine yields the same ``to_state()`` (bars
aside) as the live engine had when the last delta was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from adapters.sim.accounts import AccountRecord, Position
from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.instruments import SimInstrument
from adapters.sim.models import Event, SimFill, SimOrder
from adapters.sim.snapshot import restore_state


class JournaledEngine(SimEngine):
    """A :class:`SimEngine` that remembers what changed since the last :meth:`mark_journaled`.

    Only bookkeeping is added (``_store`` is recorded, then delegated): matching, ids and events
    are the base engine's, so determinism is untouched.
    """

    def __init__(
        self,
        instruments: Mapping[str, SimInstrument] | None = None,
        config: EngineConfig | None = None,
        seed: int = 0,
        start_ts: int = 0,
    ) -> None:
        super().__init__(instruments, config, seed, start_ts)
        self._stored_log: list[SimOrder] = []
        self._journaled_fills = 0
        self._journaled_event_seq = 0
        self.mark_journaled()

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> JournaledEngine:
        engine = restore_state(cls, state)
        engine.mark_journaled()
        return engine

    def _store(self, order: SimOrder) -> SimOrder:
        self._stored_log.append(order)
        return super()._store(order)

    def mark_journaled(self) -> None:
        """Everything up to now is on disk (snapshot written or delta appended)."""
        self._stored_log = []
        self._journaled_fills = len(self._fills)
        self._journaled_event_seq = self._event_seq

    def delta(self) -> dict[str, Any]:
        """The JSON-ready change since the last :meth:`mark_journaled` (call that once the delta
        is durable)."""
        events = self._events
        since = self._journaled_event_seq
        first_new = len(events)
        while first_new > 0 and events[first_new - 1].seq > since:
            first_new -= 1
        self._last.settle()
        self._mark.settle()
        delta = {
            "now": self.now,
            "last": {s: str(p) for s, p in self._last.items()},
            "mark": {s: str(p) for s, p in self._mark.items()},
            "accounts": [record.to_dict() for record in self._accounts.values()],
            "positions": [pos.to_dict() for pos in self._positions.values()],
            "stored": [order.to_dict() for order in self._stored_log],
            "fills": [fill.to_dict() for fill in self._fills[self._journaled_fills :]],
            "events": [event.to_dict() for event in events[first_new:]],
            "events_first": events[0].seq if events else None,
            "event_seq": self._event_seq,
            "counters": dict(self._counters),
        }
        return delta

    def apply_delta(self, delta: dict[str, Any]) -> None:
        """Replay one :meth:`delta` result on the engine it was taken after."""
        self.now = int(delta["now"])
        self._last.reset({s: Decimal(p) for s, p in delta["last"].items()})
        self._mark.reset({s: Decimal(p) for s, p in delta["mark"].items()})
        self._accounts = {}
        for item in delta["accounts"]:
            record = AccountRecord.from_dict(item)
            self._accounts[record.account_id] = record
        self._clear_positions()
        for item in delta["positions"]:
            pos = Position.from_dict(item)
            self._set_position((pos.account_id, pos.symbol), pos)
        for item in delta["stored"]:
            SimEngine._store(self, SimOrder.from_dict(item))
        self._fills.extend(SimFill.from_dict(item) for item in delta["fills"])
        self._events.extend(Event.from_dict(item) for item in delta["events"])
        first = delta["events_first"]
        if first is None:
            self._events = []
        elif self._events and self._events[0].seq < first:
            self._events = [e for e in self._events if e.seq >= first]
        self._event_seq = int(delta["event_seq"])
        self._counters = {k: int(v) for k, v in delta["counters"].items()}
        self.mark_journaled()
