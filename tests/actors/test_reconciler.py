"""Reconciliation passes against the in-process venue: each classification and its action."""

from __future__ import annotations

from decimal import Decimal

from actors.execution import ExecutionCore, ExecutionParams
from actors.messages import PlaceIntent
from actors.reconciler import NOT_READY, READY, RECHECK, Reconciler, ReconcileReport
from domain.models import (
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
    Origin,
    PositionSide,
    Side,
)
from domain.position_table import State
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal
FRAC = D("0.02")


def make_core(venue: InProcessHarness, store: PositionStore) -> ExecutionCore:
    params = ExecutionParams(
        adopted_stop_distance_frac=FRAC, ambiguous_grace_s=0.0, confirm_after_s=0.0
    )
    return ExecutionCore(venue.port, store, params=params)


def settle(core: ExecutionCore, now: int) -> ReconcileReport:
    """Passes until one is not waiting for a confirmation (at most three)."""
    for _ in range(3):
        report = core.reconciler.run(now)
        if report.status != RECHECK:
            return report
    return report


def manual(
    venue: InProcessHarness,
    side: Side,
    qty: str,
    *,
    kind: OrderType = OrderType.MARKET,
    trigger: str | None = None,
    price: str | None = None,
    reduce_only: bool = False,
    client_id: str = "",
) -> Order:
    """An order placed by someone else (an operator at the venue's web page)."""
    order = Order(
        client_id=client_id,
        symbol=BTC,
        role=OrderRole.STOP if kind is OrderType.STOP else OrderRole.ENTRY,
        type=kind,
        side=side,
        qty=D(qty),
        reduce_only=reduce_only,
        status=OrderStatus.SENDING,
        trigger_price=None if trigger is None else D(trigger),
        price=None if price is None else D(price),
    )
    return venue.port.place_order(order)


def stops(venue: InProcessHarness) -> list[Order]:
    return [o for o in venue.port.open_orders(BTC) if o.type is OrderType.STOP]


def open_long(core: ExecutionCore, now: int) -> None:
    intent = OrderIntent(
        symbol=BTC,
        side=PositionSide.LONG,
        qty=D("0.02"),
        entry_type=OrderType.MARKET,
        entry_price=None,
        stop_price=D("48000"),
        take_profits=(),
        strategy="test",
    )
    core.handle(PlaceIntent(intent), now)


def test_unknown_position_is_adopted_with_a_stop_beyond_the_worse_price(
    venue: InProcessHarness, store: PositionStore
) -> None:
    manual(venue, Side.BUY, "0.03")
    venue.set_price(BTC, D(49_000))  # the mark is now worse than the entry
    core = make_core(venue, store)
    first = core.reconciler.run(venue.now_ms())
    assert first.status == RECHECK and BTC not in core.registry  # one sighting is not enough
    report = core.reconciler.run(venue.now_ms())
    assert report.status == READY
    [symbol] = report.plan.reports  # type: ignore[union-attr]
    assert symbol.classification.value == "unknown"
    pos = core.registry[BTC]
    assert pos.origin is Origin.ADOPTED and pos.current is State.PROTECTED
    [stop] = stops(venue)
    assert stop.side is Side.SELL and stop.reduce_only and stop.qty == D("0.03")
    assert stop.trigger_price == D(49_000) * (1 - FRAC)
    assert Reconciler(core).run(venue.now_ms()).plan.actions == ()  # type: ignore[union-attr]


def test_adoption_replaces_a_foreign_stop_and_leaves_exactly_one(
    venue: InProcessHarness, store: PositionStore
) -> None:
    manual(venue, Side.SELL, "0.02")
    manual(venue, Side.BUY, "0.02", kind=OrderType.STOP, trigger="52000", reduce_only=True)
    manual(venue, Side.BUY, "0.01", kind=OrderType.STOP, trigger="53000", reduce_only=True)
    core = make_core(venue, store)
    settle(core, venue.now_ms())
    [stop] = stops(venue)
    pos = core.registry[BTC]
    assert pos.side is PositionSide.SHORT and pos.current is State.PROTECTED
    assert stop.client_id == pos.data.stop_resting.client_id  # type: ignore[union-attr]
    assert stop.trigger_price == D(50_000) * (1 + FRAC)


def test_stop_cancelled_at_the_venue_is_forgotten_and_placed_again(
    venue: InProcessHarness, store: PositionStore
) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    [stop] = stops(venue)
    with venue.port.lock:
        venue.engine.venue_cancel(stop.exchange_id)  # type: ignore[arg-type]
    report = Reconciler(make_core(venue, store)).run(venue.now_ms())
    kinds = [type(a).__name__ for a, _ in report.done]
    assert kinds == ["ForgetStop", "PlaceStop"]
    [again] = stops(venue)
    assert again.client_id != stop.client_id and again.trigger_price == stop.trigger_price


def test_duplicate_and_orphan_stops_are_cancelled(
    venue: InProcessHarness, store: PositionStore
) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    mine = stops(venue)[0]
    manual(venue, Side.SELL, "0.02", kind=OrderType.STOP, trigger="47000", reduce_only=True)
    core2 = make_core(venue, store)
    report = Reconciler(core2).run(venue.now_ms())
    assert report.plan.reports[0].classification.value == "chaos"  # type: ignore[union-attr]
    assert [o.client_id for o in stops(venue)] == [mine.client_id]


def test_orphan_stop_of_a_flat_symbol_is_cancelled_and_foreign_entries_left(
    venue: InProcessHarness, store: PositionStore
) -> None:
    manual(venue, Side.BUY, "0.01")
    manual(venue, Side.SELL, "0.01", kind=OrderType.STOP, trigger="45000", reduce_only=True)
    manual(venue, Side.SELL, "0.01")  # flat again; the stop is left behind
    bid = manual(venue, Side.BUY, "0.01", kind=OrderType.LIMIT, price="40000")
    core = make_core(venue, store)
    report = Reconciler(core).run(venue.now_ms())
    assert report.status == READY and BTC not in core.registry
    assert [o.exchange_id for o in venue.port.open_orders(BTC)] == [bid.exchange_id]
    assert [o.exchange_id for o in report.plan.untouched] == [bid.exchange_id]  # type: ignore[union-attr]


def test_absent_position_is_closed_only_on_the_second_pass(
    venue: InProcessHarness, store: PositionStore
) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    # someone closes it at the venue and removes the stop; our fills poll cannot see it as ours
    manual(venue, Side.SELL, "0.02")
    for stop in stops(venue):
        venue.port.cancel_order(BTC, exchange_id=stop.exchange_id)
    reconciler = Reconciler(make_core(venue, store))
    first = reconciler.run(venue.now_ms())
    assert first.status == RECHECK
    assert reconciler.core.registry[BTC].current is not State.CLOSED
    second = reconciler.run(venue.now_ms())
    assert second.status == READY
    assert BTC not in reconciler.core.registry
    assert store.states()  # the position row is kept, closed
    assert all(s is State.CLOSED for s in store.states().values())


def test_size_difference_is_followed_after_confirmation_and_the_stop_resized(
    venue: InProcessHarness, store: PositionStore
) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    manual(venue, Side.BUY, "0.01")  # an operator added to the position at the venue
    reconciler = Reconciler(make_core(venue, store))
    assert reconciler.run(venue.now_ms()).status == RECHECK
    assert reconciler.run(venue.now_ms()).status == READY
    pos = reconciler.core.registry[BTC]
    assert pos.remaining == D("0.03") and pos.current is State.PROTECTED
    [stop] = stops(venue)
    assert stop.qty == D("0.03")


def test_failed_read_is_never_taken_for_flat(venue: InProcessHarness, store: PositionStore) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    venue.inject(Fault.READ_5XX, times=10)
    report = Reconciler(make_core(venue, store)).run(venue.now_ms())
    assert report.status == NOT_READY and report.done == ()
    venue.clear_faults()
    assert len(stops(venue)) == 1


def test_dry_run_changes_nothing(venue: InProcessHarness, store: PositionStore) -> None:
    manual(venue, Side.BUY, "0.03")
    before = store.count("transitions")
    core = make_core(venue, store)
    report = Reconciler(core).run(venue.now_ms(), dry_run=True)  # shows what it would adopt
    assert [type(a).__name__ for a, _ in report.done] == ["Adopt", "PlaceStop"]
    assert all(outcome == "planned" for _, outcome in report.done)
    assert store.count("transitions") == before and stops(venue) == []
    assert report.to_dict()["actions"][0]["action"] == "Adopt"


def test_back_to_back_passes_do_not_confirm_a_doubt(
    venue: InProcessHarness, store: PositionStore
) -> None:
    clock = [100.0]
    params = ExecutionParams(confirm_after_s=3.0, ambiguous_grace_s=0.0)
    core = ExecutionCore(venue.port, store, params=params, monotonic=lambda: clock[0])
    open_long(core, venue.now_ms())
    real = venue.port.positions  # the venue "forgets" the position for a while (stale reads)
    venue.port.positions = lambda: []  # type: ignore[method-assign]
    try:
        for _ in range(3):
            assert core.reconciler.run(venue.now_ms()).status == RECHECK
        assert core.registry[BTC].current is State.PROTECTED
    finally:
        venue.port.positions = real  # type: ignore[method-assign]
    clock[0] += 5.0  # later, the venue shows it again: the doubt is dropped
    assert core.reconciler.run(venue.now_ms()).status == READY
    assert core.registry[BTC].current is State.PROTECTED and len(stops(venue)) == 1


def test_a_fill_between_passes_restarts_the_doubt(
    venue: InProcessHarness, store: PositionStore
) -> None:
    clock = [100.0]
    params = ExecutionParams(confirm_after_s=3.0, ambiguous_grace_s=0.0)
    core = ExecutionCore(venue.port, store, params=params, monotonic=lambda: clock[0])
    open_long(core, venue.now_ms())
    manual(venue, Side.BUY, "0.01")  # the venue's size now differs from ours
    assert core.reconciler.run(venue.now_ms()).status == RECHECK
    pos = core.registry[BTC]
    core.apply_event(pos, lambda: pos.quarantine("an event in between", at=1), venue.now_ms())
    clock[0] += 5.0
    assert core.reconciler.run(venue.now_ms()).status == RECHECK  # seen anew, not confirmed
    assert core.registry[BTC].remaining == D("0.02")
    clock[0] += 5.0
    assert core.reconciler.run(venue.now_ms()).status == READY
    assert core.registry[BTC].remaining == D("0.03")


def test_a_quarantined_naked_position_gets_its_stop_from_reconciliation(
    venue: InProcessHarness, store: PositionStore
) -> None:
    core = make_core(venue, store)
    open_long(core, venue.now_ms())
    [stop] = stops(venue)
    with venue.port.lock:
        venue.engine.venue_cancel(stop.exchange_id)  # type: ignore[arg-type]
    pos = core.registry[BTC]
    core.apply_event(pos, lambda: pos.quarantine("ladder exhausted", at=1), venue.now_ms())
    settle(core, venue.now_ms())
    [again] = stops(venue)
    assert again.qty == D("0.02") and again.reduce_only
