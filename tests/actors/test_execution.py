"""Execution against the in-process venue: write-ahead, protection, recovery, closing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from actors.core import ALLOCATOR, PROTECTION, RISK
from actors.execution import ExecutionCore, ExecutionParams
from actors.messages import (
    CloseRequested,
    KillSwitchChanged,
    PlaceIntent,
    PositionChanged,
    Tick,
    TradeClosed,
)
from domain.models import OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide
from domain.position_table import State
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal


@pytest.fixture
def venue() -> InProcessHarness:
    harness = InProcessHarness()
    harness.set_price(BTC, D(50_000))
    return harness


@pytest.fixture
def store(tmp_path: Path):
    with PositionStore.open(tmp_path / "positions.db") as s:
        yield s


def core(venue: InProcessHarness, store: PositionStore) -> ExecutionCore:
    return ExecutionCore(
        venue.port, store, params=ExecutionParams(stop_retry_initial_ms=100, max_stop_attempts=3)
    )


def intent(
    kind: OrderType = OrderType.MARKET,
    price: str | None = None,
    targets: tuple[tuple[Decimal, Decimal], ...] = (),
    expires_at: int = 0,
) -> PlaceIntent:
    return PlaceIntent(
        OrderIntent(
            symbol=BTC,
            side=PositionSide.LONG,
            qty=D("0.02"),
            entry_type=kind,
            entry_price=None if price is None else D(price),
            stop_price=D("48000.4"),
            take_profits=targets,
            strategy="test",
            expires_at=expires_at,
        )
    )


def venue_stops(venue: InProcessHarness) -> list:
    return [o for o in venue.port.open_orders(BTC) if o.role is OrderRole.STOP]


def test_market_entry_is_protected_at_once(venue: InProcessHarness, store: PositionStore) -> None:
    ex = core(venue, store)
    out = ex.handle(intent(), venue.now_ms())
    (pos,) = ex.registry.values()
    assert pos.current is State.PROTECTED
    (stop,) = venue_stops(venue)
    assert stop.reduce_only
    assert stop.qty == D("0.02")
    assert stop.trigger_price == D(48001)  # rounded up to the tick: a long's stop only tightens
    journal = {o.role: o.status for o in store.orders(position_id=pos.id)}
    assert journal == {OrderRole.ENTRY: OrderStatus.FILLED, OrderRole.STOP: OrderStatus.ACKED}
    states = [m.view.state for d, m in out if d == PROTECTION and isinstance(m, PositionChanged)]
    assert states[-1] is State.PROTECTED
    assert {d for d, _ in out} == {ALLOCATOR, RISK, PROTECTION}


def test_limit_entry_waits_then_fills_and_is_protected(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ex.handle(intent(OrderType.LIMIT, "49000"), venue.now_ms())
    (pos,) = ex.registry.values()
    assert pos.current is State.PENDING
    assert venue_stops(venue) == []
    venue.set_price(BTC, D(48_900))
    ex.handle(Tick(venue.now_ms()), venue.now_ms())
    assert pos.current is State.PROTECTED
    assert [s.qty for s in venue_stops(venue)] == [D("0.02")]


def test_expired_limit_entry_is_cancelled(venue: InProcessHarness, store: PositionStore) -> None:
    ex = core(venue, store)
    now = venue.now_ms()
    ex.handle(intent(OrderType.LIMIT, "45000", expires_at=now + 1000), now)
    (pos,) = ex.registry.values()
    ex.handle(Tick(now + 2000), now + 2000)
    assert pos.current is State.CANCELLED
    assert ex.registry == {}
    assert venue.port.open_orders(BTC) == []


def test_rejected_stop_is_retried_with_back_off(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    venue.inject(Fault.REJECT_STOP, times=2)
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    assert pos.current is State.UNPROTECTED
    ex.handle(Tick(now + 10), now + 10)  # inside the back-off: no new attempt
    assert venue.pending_faults() == 1
    ex.handle(Tick(now + 1000), now + 1000)  # second attempt, rejected again
    assert venue.pending_faults() == 0
    ex.handle(Tick(now + 5000), now + 5000)
    assert pos.current is State.PROTECTED
    assert len(venue_stops(venue)) == 1


def test_stop_that_cannot_be_placed_ends_in_a_flatten(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    venue.inject(Fault.REJECT_STOP, times=10)
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    for step in range(1, 8):
        ex.handle(Tick(now + step * 5000), now + step * 5000)
    assert pos.current is State.CLOSED
    assert [p for p in venue.port.positions() if p.symbol == BTC] == []


def test_ambiguous_stop_is_resolved_not_resent(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    venue.inject(Fault.TIMEOUT_AFTER_ACCEPT, times=1)
    ex.handle(intent(OrderType.LIMIT, "49000"), venue.now_ms())  # the entry send times out
    (pos,) = ex.registry.values()
    entry = next(o for o in store.orders(position_id=pos.id) if o.role is OrderRole.ENTRY)
    assert entry.status is OrderStatus.ACKED  # resolved by client id: it was accepted
    assert [o.client_id for o in venue.port.open_orders(BTC)] == [pos.entry_client_id]
    venue.inject(Fault.TIMEOUT_AFTER_ACCEPT, times=1)
    venue.set_price(BTC, D(48_900))
    ex.handle(Tick(venue.now_ms()), venue.now_ms())  # fill, then a stop whose answer is lost
    assert pos.current is State.PROTECTED
    assert len(venue_stops(venue)) == 1


def test_stop_hit_closes_and_cancels_leftover_take_profit(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ex.handle(intent(targets=((D(60_000), D("0.02")),)), venue.now_ms())
    (pos,) = ex.registry.values()
    assert [o.role for o in venue.port.open_orders(BTC)].count(OrderRole.TAKE_PROFIT) == 1
    venue.set_price(BTC, D(47_000))
    out = ex.handle(Tick(venue.now_ms()), venue.now_ms())
    assert pos.current is State.CLOSED
    assert venue.port.open_orders(BTC) == []  # no orphaned take-profit
    (closed,) = {m for _, m in out if isinstance(m, TradeClosed)}
    assert closed.pnl < 0
    assert closed.r_multiple is not None
    assert closed.r_multiple < -0.9


def test_close_requested_exits_and_leaves_no_orders(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ex.handle(intent(), venue.now_ms())
    (pos,) = ex.registry.values()
    ex.handle(CloseRequested(BTC, "swap"), venue.now_ms())
    assert pos.current is State.CLOSED
    assert venue.port.open_orders(BTC) == []
    assert venue.port.positions() == []


def test_kill_switch_cancels_entries_and_keeps_stops(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ex.handle(intent(targets=((D(60_000), D("0.02")),)), venue.now_ms())
    eth_like = intent(OrderType.LIMIT, "40000")
    ex.handle(KillSwitchChanged(True, "operator", venue.now_ms()), venue.now_ms())
    assert [o.role for o in venue.port.open_orders(BTC)] == [OrderRole.STOP]
    ex.handle(eth_like, venue.now_ms())  # refused while latched
    assert len(ex.registry) == 1


def test_restart_resolves_an_order_written_but_never_sent(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ex.handle(intent(), venue.now_ms())
    (pos,) = ex.registry.values()
    # crash between the journal write of a replacement stop and its send
    change = pos.submit_stop(D(49_000), at=venue.now_ms())
    store.commit(pos, change)
    pos.discard()
    wall = [0.0]
    again = ExecutionCore(  # a restart: registry and unresolved orders come from the store
        venue.port,
        store,
        params=ExecutionParams(ambiguous_grace_s=5.0),
        monotonic=lambda: wall[0],
    )
    assert change.orders[0].client_id in again._unresolved
    again.handle(Tick(venue.now_ms()), venue.now_ms())  # within the grace: not yet refused
    (reloaded,) = again.registry.values()
    assert reloaded.data.stop_pending is not None
    assert len(venue_stops(venue)) == 1  # and nothing was re-sent
    wall[0] = 10.0
    again.handle(Tick(venue.now_ms()), venue.now_ms())  # past the grace: settled as refused
    assert reloaded.data.stop_pending is None
    assert store.order_status(change.orders[0].client_id) is OrderStatus.REJECTED
    assert reloaded.current is State.PROTECTED
    assert len(venue_stops(venue)) == 1


def test_protection_latency_is_measured_from_fill_to_stop_ack(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ticks = iter([0.0, 10.0, 10.25])  # startup reconciliation, fill applied, stop acked
    latencies: list[float] = []
    ex = ExecutionCore(
        venue.port, store, on_latency=latencies.append, monotonic=lambda: next(ticks)
    )
    ex.handle(intent(), venue.now_ms())
    assert latencies == [0.25]


def test_a_refused_exit_never_loops_and_ends_in_quarantine(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    venue.inject(Fault.REJECT_STOP, times=100)
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    venue.inject(Fault.RATE_LIMIT_WRITE, times=100)  # every exit is refused too
    for step in range(1, 40):
        ex.handle(Tick(now + step * 5000), now + step * 5000)
    sent = [o for o in store.orders(position_id=pos.id) if o.role is OrderRole.EXIT]
    assert 1 <= len(sent) <= 3  # bounded attempts, with back-off between them
    assert pos.current is State.QUARANTINED
    assert pos.data.quarantine_reason == "exit refused repeatedly"
