"""Property: a reduce-only order never opens, grows or flips a position."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sim.engine import SimEngine
from domain.models import Candle, Side
from tests.adapters.sim.conftest import ETH, T0, make_engine

D = Decimal
LOT = D("0.01")

sides = st.sampled_from(["buy", "sell"])
qty_units = st.integers(min_value=1, max_value=40)
offsets = st.integers(min_value=1, max_value=60)

operation = st.one_of(
    st.tuples(st.just("mkt"), sides, qty_units, st.booleans()),
    st.tuples(st.just("lmt"), sides, qty_units, st.integers(-30, 30), st.booleans()),
    st.tuples(
        st.sampled_from(["stp", "take_profit"]),
        sides,
        qty_units,
        offsets,
        st.sampled_from(["last", "mark"]),
    ),
    st.tuples(st.just("price"), st.integers(-80, 80), st.integers(-20, 20)),
    st.tuples(st.just("candle"), st.integers(-50, 50), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("edit"), st.integers(0, 5), qty_units),
)


def _apply(engine: SimEngine, op: tuple, clock: list[int]) -> None:
    last = engine.last_price(ETH)
    step = D("0.5")
    kind = op[0]
    if kind == "mkt":
        _, side, units, reduce_only = op
        engine.send_order("acc", ETH, side, "mkt", LOT * units, reduce_only=reduce_only)
    elif kind == "lmt":
        _, side, units, offset, reduce_only = op
        engine.send_order(
            "acc",
            ETH,
            side,
            "lmt",
            LOT * units,
            limit_price=last + step * offset,
            reduce_only=reduce_only,
        )
    elif kind in {"stp", "take_profit"}:
        _, side, units, offset, signal = op
        above = (side == "buy") == (kind == "stp")
        trigger = last + step * offset if above else last - step * offset
        engine.send_order(
            "acc",
            ETH,
            side,
            kind,
            LOT * units,
            stop_price=trigger,
            reduce_only=True,
            trigger_signal=signal,
        )
    elif kind == "price":
        _, delta, mark_delta = op
        clock[0] += 1000
        price = max(last + step * delta, D(100))
        engine.set_price(ETH, price, mark=price + step * mark_delta, ts=clock[0])
    elif kind == "candle":
        _, delta, up, down = op
        clock[0] = clock[0] - clock[0] % 60_000 + 60_000
        close = max(float(last + step * delta), 200.0)
        high = max(float(last), close) + up * 0.5
        low = min(float(last), close) - down * 0.5
        engine.on_candle(Candle(ETH, "1m", clock[0], float(last), high, low, close, 1000.0))
        clock[0] += 59_999
    elif kind == "cancel":
        orders = engine.open_orders("acc")
        if orders:
            engine.cancel_order("acc", orders[op[1] % len(orders)].order_id)
    elif kind == "edit":
        orders = engine.open_orders("acc")
        if orders:
            engine.edit_order("acc", orders[op[1] % len(orders)].order_id, size=LOT * op[2])


def _check_resting_reduce_only(engine: SimEngine) -> None:
    pos = engine.position("acc", ETH)
    qty = pos.qty if pos else D(0)
    for order in engine.open_orders("acc", ETH):
        if order.reduce_only:
            assert qty != 0
            assert (order.side is Side.SELL) == (qty > 0)
            assert order.remaining <= abs(qty)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=40))
def test_reduce_only_never_grows_or_flips(ops: list[tuple]) -> None:
    engine = make_engine(balance="10000000")
    clock = [T0]
    for op in ops:
        _apply(engine, op, clock)
        _check_resting_reduce_only(engine)
    position = D(0)
    for fill in engine.fills("acc"):
        signed = fill.qty if fill.side is Side.BUY else -fill.qty
        after = position + signed
        order = engine.get_order(fill.order_id)
        assert order is not None
        if order.reduce_only:
            assert position != 0
            assert abs(after) < abs(position)
            assert after == 0 or (after > 0) == (position > 0)
        position = after
    final = engine.position("acc", ETH)
    assert position == (final.qty if final else 0)
