"""Reconciliation decisions, property-tested: hypothesis draws registry and venue states, a small
model of the venue carries the plan out, and the outcome must hold the invariants."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.models import Order, OrderRole, OrderStatus, OrderType, PositionSide, PositionSnapshot
from domain.position_table import State
from domain.reconcile import (
    ORDER,
    AdjustQty,
    Adopt,
    CancelOrder,
    Classification,
    CloseAbsent,
    ForgetStop,
    Managed,
    PlaceStop,
    Recheck,
    Venue,
    plan,
    stop_is_correct,
)

D = Decimal
FRAC = D("0.05")
SYMBOLS = ("AAA", "BBB", "CCC")
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
_ids = itertools.count(1)


def order(symbol: str, side: PositionSide, qty: int, trigger: int, client_id: str) -> Order:
    """A reduce-only stop closing a position of ``side``."""
    return Order(
        client_id=client_id,
        symbol=symbol,
        role=OrderRole.STOP,
        type=OrderType.STOP,
        side=side.exit_side,
        qty=D(qty),
        reduce_only=True,
        status=OrderStatus.ACKED,
        trigger_price=D(trigger),
        exchange_id=f"x{next(_ids)}",
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Managed], Venue, frozenset[str]]:
    managed: list[Managed] = []
    positions: list[PositionSnapshot] = []
    orders: list[Order] = []
    for n, symbol in enumerate(SYMBOLS):
        side = draw(st.sampled_from([LONG, SHORT]))
        held = draw(st.sampled_from([None, 1, 2, 3]))
        if held is not None:
            venue_side = side if draw(st.booleans()) else (SHORT if side is LONG else LONG)
            positions.append(PositionSnapshot(symbol, venue_side, D(held), D(100), D(100)))
        pid = f"p{n}"
        if draw(st.booleans()):  # a managed position
            remaining = draw(st.sampled_from([0, 1, 2, 3]))
            stop_id = None
            if remaining and draw(st.booleans()):
                stop_id = f"bst-{pid}-sl-1"
                trigger = 90 if side is LONG else 110
                if draw(st.booleans()):  # it really rests at the venue
                    orders.append(order(symbol, side, remaining, trigger, stop_id))
            managed.append(
                Managed(
                    pid,
                    symbol,
                    side,
                    State.PROTECTED if stop_id else State.UNPROTECTED,
                    D(remaining),
                    frozenset({stop_id} if stop_id else ()),
                    stop_id,
                    D(remaining) if stop_id else D(0),
                    D(90 if side is LONG else 110) if stop_id else None,
                    False,
                    draw(st.sampled_from([0, 1])),
                )
            )
        for k in range(draw(st.integers(0, 2))):  # other stops: foreign, or of dead positions
            stop_side = draw(st.sampled_from([LONG, SHORT]))
            trigger = draw(st.sampled_from([80, 95, 105, 120]))
            cid = draw(st.sampled_from(["", f"bst-dead{n}{k}-sl-1", f"manual{n}{k}"]))
            orders.append(order(symbol, stop_side, draw(st.integers(1, 3)), trigger, cid))
    confirmed = frozenset(draw(st.sets(st.sampled_from(SYMBOLS))))  # unknown exposure seen before
    return managed, Venue(positions, orders), confirmed


def carry_out(
    managed: list[Managed], venue: Venue, actions: tuple[object, ...]
) -> tuple[list[Managed], Venue]:
    """What the venue and registry look like once every action succeeded."""
    reg = {m.symbol: m for m in managed}
    orders = list(venue.orders)
    held = {p.symbol: p for p in venue.positions}
    for action in actions:
        match action:
            case CloseAbsent(symbol=symbol):
                del reg[symbol]
            case Adopt(symbol=s, side=side, qty=qty):
                reg[s] = Managed(f"adopted-{s}", s, side, State.UNPROTECTED, qty)
            case AdjustQty(symbol=s, delta=delta):
                reg[s] = replace(reg[s], remaining=reg[s].remaining + delta)
            case ForgetStop(symbol=s):
                reg[s] = replace(reg[s], stop_client_id=None, tracked=frozenset())
            case PlaceStop(symbol=s, price=price):
                m, p = reg[s], held[s]
                trigger = price or (D(90) if p.side is LONG else D(110))
                cid = f"bst-{m.position_id}-sl-{next(_ids)}"
                old = m.stop_client_id
                orders = [o for o in orders if o.client_id != old or old is None]
                orders.append(order(s, p.side, int(p.qty), int(trigger), cid))
                reg[s] = replace(m, stop_client_id=cid, tracked=frozenset({cid}), stop_qty=p.qty)
            case CancelOrder(exchange_id=xid):
                orders = [o for o in orders if o.exchange_id != xid]
    managed_after = [replace(m, doubt_passes=0) for m in reg.values()]
    return managed_after, Venue(venue.positions, orders)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_a_carried_out_plan_leaves_every_exposure_managed_with_one_correct_stop(
    world: tuple[list[Managed], Venue, frozenset[str]],
) -> None:
    managed, venue, confirmed = world
    decided = plan(managed, venue, FRAC, confirmed)
    doubted = {a.symbol for a in decided.actions if isinstance(a, Recheck)}
    after_reg, after_venue = carry_out(managed, venue, decided.actions)
    by_symbol = {m.symbol: m for m in after_reg}
    for p in venue.positions:
        if p.symbol in doubted:
            continue
        mine = by_symbol[p.symbol]
        assert (mine.side, mine.remaining) == (p.side, p.qty)
        stops = [o for o in after_venue.orders if o.symbol == p.symbol and o.reduce_only]
        assert len(stops) == 1 and stop_is_correct(stops[0], p)
        assert stops[0].client_id == mine.stop_client_id
    flat = {s for s in SYMBOLS if s not in {p.symbol for p in venue.positions}} - doubted
    for o in after_venue.orders:
        assert o.symbol not in flat or not o.reduce_only, "orphan stop left on a flat symbol"


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_a_second_plan_after_carrying_out_has_nothing_left_to_do(
    world: tuple[list[Managed], Venue, frozenset[str]],
) -> None:
    managed, venue, confirmed = world
    decided = plan(managed, venue, FRAC, confirmed)
    if not decided.settled:
        return
    after_reg, after_venue = carry_out(managed, venue, decided.actions)
    again = plan(after_reg, after_venue, FRAC)
    assert again.actions == ()
    assert {r.classification for r in again.reports} <= {
        Classification.PROTECTED,
        Classification.PENDING,
    }


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_safety_rules_hold_for_every_plan(
    world: tuple[list[Managed], Venue, frozenset[str]],
) -> None:
    managed, venue, confirmed = world
    decided = plan(managed, venue, FRAC, confirmed)
    held = {p.symbol: p for p in venue.positions}
    kinds = [type(a) for a in decided.actions]
    for first, later in itertools.pairwise(kinds):  # the order actions run in
        assert _rank(first) <= _rank(later)
    for m in managed:
        closes = [a for a in decided.actions if isinstance(a, CloseAbsent)]
        if any(a.position_id == m.position_id for a in closes):
            p = held.get(m.symbol)
            opposite = p is not None and p.side is not m.side
            assert opposite or m.doubt_passes >= 1, "closed on a single absence"
    for action in decided.actions:
        if isinstance(action, Adopt):
            assert action.symbol in confirmed, "adopted on a single sighting"
            p = held[action.symbol]
            worse = (
                min(p.entry_price, p.mark_price)
                if p.side is LONG
                else max(p.entry_price, p.mark_price)
            )  # type: ignore[type-var]
            assert (action.stop_price < worse) if p.side is LONG else (action.stop_price > worse)
        if isinstance(action, CancelOrder):
            victim = next(o for o in venue.orders if o.exchange_id == action.exchange_id)
            assert victim.reduce_only, "an order that opens exposure was cancelled"
            mine = next((m for m in managed if m.symbol == action.symbol), None)
            p = held.get(action.symbol)
            if mine is not None and p is not None and victim.client_id == mine.stop_client_id:
                assert not stop_is_correct(victim, p), "the registry's correct stop was cancelled"


def _rank(kind: type) -> int:
    return ORDER.index(kind)


def test_absence_first_counts_then_closes() -> None:
    mine = Managed("p1", "AAA", LONG, State.PROTECTED, D(1))
    first = plan([mine], Venue([], []), FRAC)
    assert [type(a) for a in first.actions] == [Recheck] and not first.settled
    second = plan([replace(mine, doubt_passes=1)], Venue([], []), FRAC)
    assert [type(a) for a in second.actions] == [CloseAbsent] and second.settled


def test_opposite_side_closes_at_once_and_adopts() -> None:
    mine = Managed("p1", "AAA", LONG, State.PROTECTED, D(1))
    venue = Venue([PositionSnapshot("AAA", SHORT, D(2), D(100), D(100))], [])
    kinds = [type(a) for a in plan([mine], venue, FRAC).actions]
    assert kinds == [CloseAbsent, Recheck]  # closed at once; the new exposure is confirmed first
    kinds = [type(a) for a in plan([mine], venue, FRAC, frozenset({"AAA"})).actions]
    assert kinds == [CloseAbsent, Adopt, PlaceStop]
