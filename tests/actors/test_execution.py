"""Execution against the in-process venue: write-ahead, protection, recovery, closing."""

from __future__ import annotations

from decimal import Decimal

from actors.core import ALLOCATOR, PROTECTION, RISK
from actors.execution import ExecutionCore, ExecutionParams
from actors.messages import (
    AccountEquity,
    CloseRequested,
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OrderOutcome,
    Outcome,
    PlaceIntent,
    PositionChanged,
    Quarantine,
    StopVariant,
    Tick,
    TradeClosed,
)
from domain.models import OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide
from domain.position_table import State
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal


def core(venue: InProcessHarness, store: PositionStore) -> ExecutionCore:
    return ExecutionCore(venue.port, store, params=ExecutionParams(exit_retry_initial_ms=100))


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


def outcomes(out: list) -> list[tuple[str, Outcome]]:
    return [
        (m.role.value, m.outcome) for d, m in out if d == PROTECTION and isinstance(m, OrderOutcome)
    ]


def test_a_rejected_stop_waits_for_the_ladder(
    venue: InProcessHarness, store: PositionStore
) -> None:
    """After a failed stop, execution sends no stop on its own: only the ladder's commands."""
    ex = core(venue, store)
    venue.inject(Fault.REJECT_STOP, times=2)
    now = venue.now_ms()
    out = ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    assert pos.current is State.UNPROTECTED
    assert outcomes(out) == [("sl", Outcome.REJECTED)]
    (rejected,) = [m for _, m in out if isinstance(m, OrderOutcome)]
    assert rejected.reason == "invalidPrice"
    assert rejected.price == D(48001)
    for step in range(1, 5):  # ticks alone never retry: the ladder decides
        ex.handle(Tick(now + step * 5000), now + step * 5000)
    assert venue.pending_faults() == 1
    out = ex.handle(EnsureStop(BTC, "retry"), now + 30_000)  # one command, one attempt
    assert outcomes(out) == [("sl", Outcome.REJECTED)]
    assert venue.pending_faults() == 0
    out = ex.handle(EnsureStop(BTC, "retry"), now + 40_000)
    assert outcomes(out) == [("sl", Outcome.ACKED)]
    assert pos.current is State.PROTECTED
    assert len(venue_stops(venue)) == 1
    out = ex.handle(EnsureStop(BTC, "again"), now + 50_000)  # covered: nothing is sent
    assert outcomes(out) == [("sl", Outcome.SKIPPED)]
    assert len(venue_stops(venue)) == 1


def test_stop_variants_carry_the_trigger_signal_and_price(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    venue.inject(Fault.REJECT_STOP, times=1)
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    command = EnsureStop(BTC, "widen", StopVariant.WIDENED, "mark", D("47500.37"))
    out = ex.handle(command, now + 1000)
    assert outcomes(out) == [("sl", Outcome.ACKED)]
    assert pos.current is State.PROTECTED
    assert pos.data.stop_resting is not None
    assert pos.data.stop_resting.price == D(47501)  # on the grid, rounded toward profit
    (resting,) = [o for o in venue.engine.open_orders("conformance") if o.kind.is_trigger]
    assert resting.trigger_signal is not None
    assert resting.trigger_signal.value == "mark"


def test_a_command_while_a_stop_is_unresolved_sends_nothing(
    venue: InProcessHarness, store: PositionStore
) -> None:
    wall = [0.0]
    params = ExecutionParams(ambiguous_grace_s=5.0)
    ex = ExecutionCore(venue.port, store, params=params, monotonic=lambda: wall[0])
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    (stop,) = venue_stops(venue)
    with venue.port.lock:
        venue.engine.venue_cancel(stop.exchange_id)
    venue.inject(Fault.TIMEOUT_BEFORE_ACCEPT, times=1)
    out = ex.handle(EnsureStop(BTC, "lost"), now)  # found lost, re-placed, the answer lost
    assert outcomes(out) == [("sl", Outcome.UNKNOWN)]
    out = ex.handle(EnsureStop(BTC, "again"), now + 1000)
    assert outcomes(out) == [("sl", Outcome.IN_FLIGHT)]
    assert venue_stops(venue) == []  # nothing re-sent while the first one is unresolved
    wall[0] = 10.0  # past the grace: the venue never saw it, so it counts as refused
    out = ex.handle(Tick(now + 2000), now + 2000)
    assert outcomes(out) == [("sl", Outcome.REJECTED)]
    assert pos.current is State.UNPROTECTED
    out = ex.handle(EnsureStop(BTC, "retry"), now + 3000)
    assert outcomes(out) == [("sl", Outcome.ACKED)]
    assert pos.current is State.PROTECTED


def test_forced_flatten_and_quarantine_commands(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    out = ex.handle(Quarantine(BTC, "ladder exhausted"), now)
    assert pos.current is State.QUARANTINED
    assert pos.data.quarantine_reason == "ladder exhausted"
    venue.inject(Fault.RATE_LIMIT_WRITE, times=1)
    out = ex.handle(Flatten(BTC, "ladder", force=True), now + 1)
    assert outcomes(out) == [("ex", Outcome.REJECTED)]
    out = ex.handle(Flatten(BTC, "ladder", force=True), now + 2)  # no back-off of its own
    assert ("ex", Outcome.ACKED) in outcomes(out)
    assert pos.current is State.CLOSED
    out = ex.handle(Flatten(BTC, "ladder", force=True), now + 3)
    assert outcomes(out) == [("ex", Outcome.SKIPPED)]


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
    assert change.orders[0].client_id in again.orders.unresolved()
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
    now = venue.now_ms()
    ex.handle(intent(), now)
    (pos,) = ex.registry.values()
    venue.inject(Fault.RATE_LIMIT_WRITE, times=100)  # every exit is refused
    for step in range(1, 40):  # an ordinary close asked again and again
        ex.handle(CloseRequested(BTC, "operator"), now + step * 50)
        ex.handle(Tick(now + step * 50), now + step * 50)
    sent = [o for o in store.orders(position_id=pos.id) if o.role is OrderRole.EXIT]
    assert 1 <= len(sent) <= 3  # bounded attempts, with back-off between them
    assert pos.current is State.QUARANTINED
    assert pos.data.quarantine_reason == "exit refused repeatedly"


def test_the_account_is_read_every_30_seconds_and_on_each_new_minute(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    minute = 60_000 * 29_000_000  # a minute boundary

    def read_at(t: int) -> bool:
        return any(isinstance(m, AccountEquity) for _, m in ex.handle(Tick(t), t))

    assert read_at(minute + 10_000)  # the first tick reads
    assert not read_at(minute + 30_000)  # 20 s later, same minute
    assert read_at(minute + 40_000)  # 30 s later
    assert read_at(minute + 60_000)  # 20 s later, but a minute (and any bar) has closed
    assert not read_at(minute + 61_000)
