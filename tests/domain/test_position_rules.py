"""The position rules of ARCHITECTURE section 3, through the public API."""

from __future__ import annotations

import gc
import weakref

import pytest

from domain.errors import DomainError, InvalidTransition, StopLoosening
from domain.models import OrderRole, OrderStatus, Origin, PositionSide, Side
from domain.position import MACHINE, Position, client_order_id, parse_client_order_id
from domain.position_table import State, to_mermaid
from persistence.codec import position_to_record
from tests.domain import factory as f


def test_client_order_ids_are_deterministic_and_parse_back() -> None:
    cid = client_order_id("t63v1k001", OrderRole.STOP, 3)
    assert cid == "bst-t63v1k001-sl-3"
    assert parse_client_order_id(cid) == ("t63v1k001", OrderRole.STOP, 3)
    assert parse_client_order_id("manual-order") is None
    assert parse_client_order_id("bst-x-zz-1") is None


def test_open_writes_the_entry_order_ahead() -> None:
    _, change = Position.open("p9", f.SYMBOL, PositionSide.SHORT, f.D("0.5"), at=5)
    (order,) = change.orders
    assert order.client_id == "bst-p9-en-1"
    assert order.status is OrderStatus.SENDING
    assert order.side is Side.SELL and not order.reduce_only
    assert (change.source, change.dest, change.version) == (None, State.PENDING, 1)


def test_stop_orders_are_reduce_only_on_the_exit_side_with_new_attempts() -> None:
    pos = f.unprotected()
    first = pos.submit_stop(f.D(90), at=f.now()).orders[0]
    pos.on_stop_rejected(first.client_id, "would trigger immediately", at=f.now())
    second = pos.submit_stop(f.D(85), at=f.now()).orders[0]
    assert (first.client_id, second.client_id) == (f"bst-{pos.id}-sl-1", f"bst-{pos.id}-sl-2")
    assert second.reduce_only and second.side is Side.SELL and second.qty == f.D(1)


@pytest.mark.parametrize(
    ("side", "resting", "tighter", "looser"),
    [(PositionSide.LONG, "90", "95", "89"), (PositionSide.SHORT, "110", "105", "111")],
)
def test_stops_only_tighten(side: PositionSide, resting: str, tighter: str, looser: str) -> None:
    pos = f.pending(side=side)
    f.entry_fill(pos, "2")
    f.place_stop(pos, resting)
    before = position_to_record(pos)
    with pytest.raises(StopLoosening):
        pos.submit_stop(f.D(looser), at=f.now())
    assert position_to_record(pos) == before
    change = f.place_stop(pos, tighter)
    assert change.detail["replaces"] == f"bst-{pos.id}-sl-1"
    assert pos.data.stop_resting is not None and pos.data.stop_resting.price == f.D(tighter)
    assert pos.current is State.PROTECTED


def test_after_a_stop_is_lost_the_ladder_may_place_a_wider_one() -> None:
    pos = f.protected()
    assert pos.data.stop_resting is not None
    pos.on_stop_lost(pos.data.stop_resting.client_id, "venue cancel", at=f.now())
    f.place_stop(pos, "80")
    assert pos.current is State.PROTECTED


def test_one_stop_in_flight_at_a_time() -> None:
    pos = f.unprotected()
    pos.submit_stop(f.D(90), at=f.now())
    with pytest.raises(InvalidTransition):
        pos.submit_stop(f.D(91), at=f.now())


def test_duplicate_fill_changes_nothing() -> None:
    pos = f.pending()
    fill = f.fill(Side.BUY, "1", client_id=pos.entry_client_id)
    assert pos.apply_fill(fill, OrderRole.ENTRY, at=f.now()) is not None
    before = position_to_record(pos)
    assert pos.apply_fill(fill, OrderRole.ENTRY, at=f.now()) is None
    assert position_to_record(pos) == before


def test_fill_on_the_wrong_side_is_refused() -> None:
    pos = f.pending()
    with pytest.raises(DomainError):
        pos.apply_fill(f.fill(Side.SELL, "1"), OrderRole.ENTRY, at=f.now())


def test_partial_entry_fill_then_stop_replacement_restores_protection() -> None:
    pos = f.protected()  # 1 of 2 filled, stop for 1
    f.entry_fill(pos, "1")
    assert pos.current is State.UNPROTECTED and pos.remaining == f.D(2)
    change = f.place_stop(pos, "90")  # same price, full size: not a loosening
    assert pos.current is State.PROTECTED
    assert pos.data.stop_resting is not None and pos.data.stop_resting.qty == f.D(2)
    assert change.detail["replaces"] == f"bst-{pos.id}-sl-1"


def test_full_entry_fill_finishes_the_entry_order() -> None:
    pos = f.pending()
    change = f.entry_fill(pos, "2")
    assert change is not None
    assert [(u.client_id, u.status) for u in change.order_updates] == [
        (pos.entry_client_id, OrderStatus.FILLED)
    ]
    assert not pos.data.entry_working


def test_exit_fill_before_its_entry_waits_and_quantities_never_go_negative() -> None:
    pos = f.pending()
    f.exit_fill(pos, "2")
    assert pos.remaining == 0 and pos.current is State.PENDING
    f.entry_fill(pos, "1.5")
    assert pos.remaining == f.D("1.5") and len(pos.data.deferred_exits) == 1
    f.entry_fill(pos, "0.5")
    assert pos.current is State.CLOSED and pos.data.exit_filled == f.D(2)


def test_average_prices() -> None:
    pos = f.pending()
    f.entry_fill(pos, "1", "100")
    f.entry_fill(pos, "1", "110")
    assert pos.data.avg_entry_price == f.D(105)


def test_adopted_position_is_unprotected_with_its_exposure() -> None:
    pos, change = Position.adopt("a9", f.SYMBOL, PositionSide.LONG, f.D(3), f.D(50), at=1)
    assert pos.origin is Origin.ADOPTED and pos.current is State.UNPROTECTED
    assert pos.remaining == f.D(3) and change.version == 1
    f.place_stop(pos, "45")
    assert pos.current is State.PROTECTED


def test_no_exposure_no_exit_and_no_oversized_stop() -> None:
    with pytest.raises(InvalidTransition):
        f.pending().request_exit(at=f.now())
    with pytest.raises(InvalidTransition):
        f.unprotected().submit_stop(f.D(90), at=f.now(), qty=f.D(5))


def test_terminal_positions_leave_the_shared_machine() -> None:
    pos = f.closed()
    assert pos not in MACHINE.models
    assert f.protected() in MACHINE.models


def test_mermaid_diagram_is_generated_from_the_table() -> None:
    text = to_mermaid()
    assert text.startswith("stateDiagram-v2")
    assert "protected --> exiting : stop_triggered / exit_requested" in text
    assert "unprotected --> protected : entry_filled [covered_after]" in text


def test_exit_fills_beyond_known_entries_quarantine_then_settle_when_the_entry_arrives() -> None:
    pos = f.pending()
    f.entry_fill(pos, "0.25")
    f.exit_fill(pos, "0.5")  # waits: more than the known exposure
    f.exit_fill(pos, "0.25")  # known exposure is now zero, one exit still unexplained
    assert pos.current is State.QUARANTINED
    assert pos.data.quarantine_reason == "exit fills exceed the known entry fills"
    f.entry_fill(pos, "0.5")  # the late entry fill explains it: flat, the entry still works
    assert pos.current is State.QUARANTINED and not pos.data.deferred_exits
    assert pos.data.exit_filled == f.D("0.75")
    pos.on_entry_cancelled(pos.entry_client_id, at=f.now())
    assert pos.current is State.CLOSED


def test_fill_for_another_symbol_is_refused() -> None:
    pos = f.pending()
    with pytest.raises(DomainError, match="PF_ETHUSD"):
        pos.apply_fill(f.fill(Side.BUY, "1", symbol="PF_ETHUSD"), OrderRole.ENTRY, at=f.now())


def test_discarded_copy_leaves_the_shared_machine() -> None:
    pos = f.protected()
    pos.discard()
    assert pos not in MACHINE.models


def test_a_stop_hit_while_the_entry_works_waits_for_the_entry_to_end() -> None:
    """Stopped out after a partial fill: not closed while the rest of the entry can still fill
    (a fill after closing would be exposure nobody manages)."""
    pos = f.protected()  # 1 of 2 filled, stop for 1 resting
    f.stop_fill(pos, "1")
    assert pos.current is State.PENDING and pos.data.entry_working and pos.remaining == 0
    f.entry_fill(pos, "1")  # the rest of the entry fills after all: exposed again, managed
    assert pos.current is State.UNPROTECTED and pos.remaining == 1


def test_a_finished_position_holds_no_reference_to_itself() -> None:
    """Leaving the machine drops the bindings that point back at the position, so a closed
    position is freed as soon as nobody holds it, without waiting for the cyclic collector."""
    pos, _ = Position.open("gc1", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    f.entry_fill(pos, "2")
    f.place_stop(pos)
    f.stop_fill(pos, "2")
    assert pos.current is State.CLOSED
    assert not hasattr(pos, "trigger")
    ref = weakref.ref(pos)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del pos
        assert ref() is None
    finally:
        if enabled:
            gc.enable()
