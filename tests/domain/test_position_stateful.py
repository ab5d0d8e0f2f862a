"""Random exchange event sequences against one persisted position.

Fills (new, duplicated, held back and delivered out of order), acks, rejects, timeouts, cancels,
stop triggers and operator actions are applied through the public API; every change is committed
to a real WAL store and the position is reloaded from it at random points. After every step rules
2, 3, 4 and 6 of ARCHITECTURE section 3 are checked.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.errors import DomainError
from domain.models import Fill, OrderRole, OrderStatus, OrderUpdate, PositionSide
from domain.position import MACHINE, Change, Position
from domain.position_table import State
from persistence.codec import position_json, position_to_record
from persistence.store import PositionStore

SYMBOL = "PF_ETHUSD"
QTY = st.sampled_from([Decimal("0.25"), Decimal("0.5"), Decimal("1")])
STOP_PRICES = st.sampled_from([Decimal(p) for p in ("80", "85", "90", "95", "105", "110", "115")])
EXIT_ROLES = st.sampled_from([OrderRole.EXIT, OrderRole.TAKE_PROFIT, OrderRole.STOP])
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


class PositionLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="bastion-stateful-", dir=SCRATCH)
        self.store = PositionStore.open(Path(self.dir) / "positions.db")
        self.clock = itertools.count(1_000)
        self.ids = itertools.count(1)
        self.delivered: list[tuple[Fill, OrderRole]] = []
        self.held: list[tuple[Fill, OrderRole]] = []
        self.pos: Position

    @initialize(side=st.sampled_from(list(PositionSide)))
    def open_position(self, side: PositionSide) -> None:
        self.pos, change = Position.open("h1", SYMBOL, side, Decimal(2), at=self.now())
        self.store.commit(self.pos, change)

    def now(self) -> int:
        return next(self.clock)

    def teardown(self) -> None:
        if self.pos in MACHINE.models:
            MACHINE.remove_model(self.pos)
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ applying events

    def apply(self, event: Callable[[], Change | None]) -> Change | None:
        """Apply an event; a refused one must leave the position untouched (rule 6)."""
        before = position_to_record(self.pos)
        try:
            change = event()
        except DomainError:
            assert position_to_record(self.pos) == before
            return None
        if change is not None:
            self.store.commit(self.pos, change)
        return change

    def deliver(self, fill: Fill, role: OrderRole) -> None:
        seen = fill.fill_id in self.pos.data.fill_ids
        before = position_to_record(self.pos)
        change = self.apply(lambda: self.pos.apply_fill(fill, role, at=self.now()))
        if seen:  # rule 2: a replayed fill changes nothing
            assert change is None
            assert position_to_record(self.pos) == before
        elif change is not None:
            self.delivered.append((fill, role))

    def new_fill(self, role: OrderRole, qty: Decimal, client_id: str | None) -> Fill:
        side = self.pos.side.exit_side if role.reduces else self.pos.side.entry_side
        return Fill(f"x{next(self.ids)}", SYMBOL, side, qty, Decimal(100), self.now(), client_id)

    # ------------------------------------------------------------------ fills

    @rule(qty=QTY, hold=st.booleans())
    def entry_fill(self, qty: Decimal, hold: bool) -> None:
        fill = self.new_fill(OrderRole.ENTRY, qty, self.pos.entry_client_id)
        if hold:
            self.held.append((fill, OrderRole.ENTRY))
        else:
            self.deliver(fill, OrderRole.ENTRY)

    @rule(qty=QTY, role=EXIT_ROLES, hold=st.booleans())
    def exit_fill(self, qty: Decimal, role: OrderRole, hold: bool) -> None:
        d = self.pos.data
        client_id = None
        if role is OrderRole.STOP:
            stop = d.stop_resting or d.stop_pending
            client_id = stop.client_id if stop else d.exit_client_id
        elif role is OrderRole.EXIT:
            client_id = d.exit_client_id
        fill = self.new_fill(role, qty, client_id)
        if hold:
            self.held.append((fill, role))
        else:
            self.deliver(fill, role)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def deliver_held_out_of_order(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.held) - 1))
        fill, role = self.held.pop(index)
        self.deliver(fill, role)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay_a_fill(self, data: st.DataObject) -> None:
        fill, role = data.draw(st.sampled_from(self.delivered))
        self.deliver(fill, role)

    # ------------------------------------------------------------------ entry order

    @rule(status=st.sampled_from([OrderStatus.ACKED, OrderStatus.UNKNOWN]))
    def entry_answer_without_state_change(self, status: OrderStatus) -> None:
        """An ack or a timeout only touches the journal; the position does not move."""
        before = position_to_record(self.pos)
        update = OrderUpdate(self.pos.entry_client_id, status, "E1" if status else None)
        self.store.update_order(update, at=self.now())
        assert self.store.order_status(self.pos.entry_client_id) is status
        assert position_to_record(self.pos) == before

    @rule()
    def entry_rejected(self) -> None:
        cid = self.pos.entry_client_id
        self.apply(lambda: self.pos.on_entry_rejected(cid, "insufficient funds", at=self.now()))

    @rule()
    def entry_cancelled(self) -> None:
        cid = self.pos.entry_client_id
        self.apply(lambda: self.pos.on_entry_cancelled(cid, "expired", at=self.now()))

    # ------------------------------------------------------------------ stops

    @rule(price=STOP_PRICES, partial=st.booleans())
    def submit_stop(self, price: Decimal, partial: bool) -> None:
        qty = self.pos.remaining / 2 if partial and self.pos.remaining > 0 else None
        self.apply(lambda: self.pos.submit_stop(price, at=self.now(), qty=qty))

    @rule(price=STOP_PRICES)
    def stop_submitted_and_acked(self, price: Decimal) -> None:
        """The common path in one step, so replacements (rule 4) are reached often."""
        if self.apply(lambda: self.pos.submit_stop(price, at=self.now())) is not None:
            self.stop_acked()

    @rule()
    def stop_acked(self) -> None:
        d = self.pos.data
        old, new = d.stop_resting, d.stop_pending
        cid = new.client_id if new else "bst-h1-sl-999"
        change = self.apply(lambda: self.pos.on_stop_acked(cid, at=self.now(), exchange_id="S"))
        if change is not None and old is not None and new is not None:
            # rule 4: a replacement is never looser than the stop it replaces
            if self.pos.side is PositionSide.LONG:
                assert new.price >= old.price
            else:
                assert new.price <= old.price

    @rule(timeout=st.booleans())
    def stop_rejected_or_timed_out(self, timeout: bool) -> None:
        stop = self.pos.data.stop_pending
        if stop is None:
            return
        if timeout:  # the outcome is unknown: journal only, the stop stays in flight
            before = position_to_record(self.pos)
            self.store.update_order(OrderUpdate(stop.client_id, OrderStatus.UNKNOWN), at=self.now())
            assert position_to_record(self.pos) == before
        else:
            reason = "would trigger immediately"
            self.apply(lambda: self.pos.on_stop_rejected(stop.client_id, reason, at=self.now()))

    @rule(resting=st.booleans())
    def stop_lost(self, resting: bool) -> None:
        d = self.pos.data
        stop = d.stop_resting if resting else d.stop_pending
        cid = stop.client_id if stop else "bst-h1-sl-998"
        self.apply(lambda: self.pos.on_stop_lost(cid, "venue cancel", at=self.now()))

    @rule()
    def stop_triggered(self) -> None:
        stop = self.pos.data.stop_resting
        cid = stop.client_id if stop else "bst-h1-sl-997"
        self.apply(lambda: self.pos.on_stop_triggered(cid, at=self.now()))

    # ------------------------------------------------------------------ exits, operator

    @rule()
    def request_exit(self) -> None:
        self.apply(lambda: self.pos.request_exit(at=self.now(), reason="signal"))

    @rule()
    def exit_failed(self) -> None:
        cid = self.pos.data.exit_client_id or "bst-h1-ex-999"
        self.apply(lambda: self.pos.on_exit_failed(cid, "rejected", at=self.now()))

    @rule(price=STOP_PRICES, qty=QTY)
    def take_profit(self, price: Decimal, qty: Decimal) -> None:
        self.apply(lambda: self.pos.submit_take_profit(price, qty, at=self.now()))

    @rule()
    def quarantine(self) -> None:
        self.apply(lambda: self.pos.quarantine("ladder exhausted", at=self.now()))

    @rule()
    def release(self) -> None:
        self.apply(lambda: self.pos.release(at=self.now()))

    # ------------------------------------------------------------------ persistence

    @rule()
    def reload_from_store(self) -> None:
        """The store's copy equals the live one; carry on with the reloaded position."""
        reloaded = self.store.load(self.pos.id)
        assert position_to_record(reloaded) == position_to_record(self.pos)
        if self.pos in MACHINE.models:
            MACHINE.remove_model(self.pos)
        self.pos = reloaded

    # ------------------------------------------------------------------ invariants

    @invariant()
    def quantities_follow_the_distinct_fills(self) -> None:
        """Rules 2 and 3: quantities depend only on the set of fills, never go negative."""
        d = self.pos.data
        entries = sum((f.qty for f, r in self.delivered if r is OrderRole.ENTRY), Decimal(0))
        exits = sum((f.qty for f, r in self.delivered if r.reduces), Decimal(0))
        deferred = sum((f.qty for f in d.deferred_exits), Decimal(0))
        assert d.entry_filled == entries
        assert d.exit_filled + deferred == exits
        assert d.remaining == d.entry_filled - d.exit_filled >= 0
        assert d.fill_ids == {f.fill_id for f, _ in self.delivered}

    @invariant()
    def state_matches_exposure(self) -> None:
        """Rule 3 per state: a protected position's stop covers exactly the remaining size."""
        d, state = self.pos.data, self.pos.current
        if state is State.PROTECTED:
            assert d.stop_resting is not None
            assert d.stop_resting.qty == d.remaining > 0
        elif state in (State.UNPROTECTED, State.EXITING):
            assert d.remaining > 0
        elif state is State.PENDING:  # nothing filled yet, or flat again while the entry works
            assert d.remaining == 0 and (d.entry_filled == 0 or d.entry_working)
        elif state is State.CLOSED:
            assert d.remaining == 0
            assert not d.deferred_exits
        elif state is State.CANCELLED:
            assert d.entry_filled == 0

    @invariant()
    def the_stored_json_is_the_record_encoded(self) -> None:
        """The store writes position_json: exactly the record as the JSON encoder gives it."""
        record = json.dumps(position_to_record(self.pos), sort_keys=True, separators=(",", ":"))
        assert position_json(self.pos) == record

    @invariant()
    def store_is_at_the_live_version(self) -> None:
        assert self.store.states()[self.pos.id] is self.pos.current
        versions = [t["version"] for t in self.store.transitions(self.pos.id)]
        assert versions == list(range(1, self.pos.version + 1))


PositionLifecycle.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPositionLifecycle = PositionLifecycle.TestCase
