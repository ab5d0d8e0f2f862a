"""Order entry, matching and the venue's rejection statuses."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

from adapters.sim.engine import SimEngine
from adapters.sim.models import OrderState, Reason, Status
from domain.models import Side
from tests.adapters.sim.conftest import BTC, ETH, T0, make_engine

D = Decimal


def test_market_buy_fills_at_last_price_as_taker(engine: SimEngine) -> None:
    result = engine.send_order("acc", BTC, "buy", "mkt", "0.1", cli_ord_id="c1")
    assert result.accepted
    (fill,) = result.fills
    assert (fill.price, fill.qty, fill.side, fill.maker) == (D(50000), D("0.1"), Side.BUY, False)
    assert fill.fee == D("2.5")  # 0.1 * 50000 * 0.0005
    assert fill.fill_type == "taker"
    assert fill.order_id == result.order.order_id
    assert fill.cli_ord_id == "c1"
    assert fill.ts == T0
    assert result.order.state is OrderState.FILLED
    assert uuid.UUID(result.order.order_id).version == 4
    assert uuid.UUID(fill.fill_id).version == 4


def test_market_slippage_and_size_impact() -> None:
    engine = make_engine(slippage="10", impact="5")
    buy = engine.send_order("acc", BTC, "buy", "mkt", "0.0001").fills[0]
    # 10 bps + 5 bps * 5 USD / 1e6, rounded up to the 1 USD tick
    assert buy.price == D(50051)
    big = engine.send_order("acc", BTC, "buy", "mkt", "1").fills[0]
    assert big.price == D(50052)  # 50000 * 1.001025 = 50051.25 -> up
    sell = engine.send_order("acc", BTC, "sell", "mkt", "0.0001").fills[0]
    assert sell.price == D(49949)  # rounded down against the seller


def test_resting_limit_fills_on_touch_as_maker_at_limit(engine: SimEngine) -> None:
    result = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000)
    assert result.accepted and not result.fills
    assert engine.set_price(BTC, 49500, ts=T0 + 1000) == []
    fills = engine.set_price(BTC, 48000, ts=T0 + 2000)  # gaps through the limit
    assert [(f.price, f.qty, f.maker, f.fill_type) for f in fills] == [
        (D(49000), D("0.1"), True, "maker")
    ]
    assert fills[0].fee == D("0.98")  # 0.1 * 49000 * 0.0002
    assert engine.get_order(result.order.order_id).state is OrderState.FILLED


def test_marketable_limit_takes_with_price_capped_at_limit() -> None:
    engine = make_engine(slippage="10")
    fill = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=50020).fills[0]
    assert (fill.price, fill.maker) == (D(50020), False)


def test_ioc_fills_or_is_rejected(engine: SimEngine) -> None:
    assert engine.send_order("acc", BTC, "buy", "ioc", "0.1", limit_price=49000).status == (
        Status.IOC_WOULD_NOT_EXECUTE
    )
    result = engine.send_order("acc", BTC, "buy", "ioc", "0.1", limit_price=50000)
    assert result.accepted and result.fills[0].price == D(50000)


def _long(engine: SimEngine, qty: str = "0.1", symbol: str = BTC) -> None:
    assert engine.send_order("acc", symbol, "buy", "mkt", qty).accepted


def test_stop_market_triggers_on_last_and_fills_at_gapped_price(engine: SimEngine) -> None:
    _long(engine)
    stop = engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=49000, reduce_only=True, cli_ord_id="sl"
    )
    assert stop.accepted and stop.order.awaiting_trigger
    assert engine.set_price(BTC, 49001, ts=T0 + 1) == []
    (fill,) = engine.set_price(BTC, 48900, ts=T0 + 2)
    assert (fill.price, fill.qty, fill.maker, fill.cli_ord_id) == (D(48900), D("0.1"), False, "sl")
    assert engine.position("acc", BTC) is None
    kinds = [e.kind for e in engine.events_since(0, "acc")]
    assert kinds.index("order_triggered") < len(kinds) - kinds[::-1].index("fill")


def test_take_profit_triggers_when_price_rises(engine: SimEngine) -> None:
    _long(engine)
    tp = engine.send_order(
        "acc", BTC, "sell", "take_profit", "0.1", stop_price=51000, reduce_only=True
    )
    assert tp.accepted
    assert engine.set_price(BTC, 50999, ts=T0 + 1) == []
    (fill,) = engine.set_price(BTC, 51000, ts=T0 + 2)
    assert fill.price == D(51000) and fill.order_kind == "take_profit"
    assert fill.realized_pnl == D(100)  # 0.1 * (51000 - 50000)


def test_stop_limit_rests_after_trigger(engine: SimEngine) -> None:
    _long(engine)
    order = engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=49000, limit_price=49500, reduce_only=True
    ).order
    assert engine.set_price(BTC, 48000, ts=T0 + 1) == []  # triggered, limit above the market
    assert engine.get_order(order.order_id).triggered
    (fill,) = engine.set_price(BTC, 49600, ts=T0 + 2)
    assert (fill.price, fill.maker) == (D(49500), True)


def test_trigger_signal_last_versus_mark() -> None:
    engine = make_engine()
    _long(engine, "0.2")
    on_last = engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=49000, trigger_signal="last", reduce_only=True
    ).order
    on_mark = engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=49000, trigger_signal="mark", reduce_only=True
    ).order
    fills = engine.set_price(BTC, 49500, mark=48990, ts=T0 + 1)
    assert [f.order_id for f in fills] == [on_mark.order_id]
    assert fills[0].price == D(49500)  # a market order executes at the last price
    assert engine.get_order(on_last.order_id).is_open
    fills = engine.set_price(BTC, 48999, mark=49500, ts=T0 + 2)
    assert [f.order_id for f in fills] == [on_last.order_id]


def test_trigger_that_would_fire_immediately_is_rejected(engine: SimEngine) -> None:
    _long(engine)
    assert (
        engine.send_order(
            "acc", BTC, "sell", "stp", "0.1", stop_price=50000, reduce_only=True
        ).status
        == Status.INVALID_PRICE
    )
    assert (
        engine.send_order(
            "acc", BTC, "sell", "take_profit", "0.1", stop_price=49000, reduce_only=True
        ).status
        == Status.INVALID_PRICE
    )
    engine.set_price(BTC, 50000, mark=48000, ts=T0 + 1)
    assert (
        engine.send_order(
            "acc",
            BTC,
            "sell",
            "stp",
            "0.1",
            stop_price=49000,
            trigger_signal="mark",
            reduce_only=True,
        ).status
        == Status.INVALID_PRICE
    )
    assert engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=49000, trigger_signal="last", reduce_only=True
    ).accepted
    assert engine.events_since(0)[-2].data["status"] == Status.INVALID_PRICE


def test_post_only_rejected_when_it_would_take(engine: SimEngine) -> None:
    assert engine.send_order("acc", BTC, "buy", "post", "0.1", limit_price=50000).status == (
        Status.POST_WOULD_EXECUTE
    )
    assert engine.send_order("acc", BTC, "sell", "post", "0.1", limit_price=49000).status == (
        Status.POST_WOULD_EXECUTE
    )
    resting = engine.send_order("acc", BTC, "buy", "post", "0.1", limit_price=49999)
    assert resting.accepted and not resting.fills
    assert engine.open_orders("acc") == [resting.order]


def test_duplicate_client_order_id_rejected_among_open_orders(engine: SimEngine) -> None:
    engine.create_account("other", 100000)
    first = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000, cli_ord_id="x")
    assert first.accepted
    dup = engine.send_order("acc", ETH, "buy", "lmt", "1", limit_price=2000, cli_ord_id="x")
    assert dup.status == Status.DUPLICATE_CLI_ORD_ID and dup.order is None
    assert engine.send_order(
        "other", BTC, "buy", "lmt", "0.1", limit_price=49000, cli_ord_id="x"
    ).accepted
    assert engine.cancel_order("acc", cli_ord_id="x").status == Status.CANCELLED
    assert engine.send_order(
        "acc", BTC, "buy", "lmt", "0.1", limit_price=49000, cli_ord_id="x"
    ).accepted
    assert engine.send_order("acc", BTC, "buy", "mkt", "0.1", cli_ord_id="y" * 101).status == (
        Status.CLI_ORD_ID_TOO_LONG
    )


def test_insufficient_margin_rejected() -> None:
    engine = make_engine(balance="1000")  # leverage 10 -> about 10000 USD of notional
    assert engine.send_order("acc", BTC, "buy", "mkt", "0.25").status == Status.INSUFFICIENT_FUNDS
    resting = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000)
    assert resting.accepted
    assert engine.account("acc").order_margin == D(490)  # 0.1 * 49000 / 10
    assert engine.send_order("acc", BTC, "buy", "lmt", "0.11", limit_price=49000).status == (
        Status.INSUFFICIENT_FUNDS
    )
    assert engine.send_order("acc", BTC, "buy", "mkt", "0.1").accepted
    # Reducing is never blocked, and reduce-only orders reserve nothing.
    assert engine.send_order(
        "acc", BTC, "sell", "stp", "0.1", stop_price=40000, reduce_only=True
    ).accepted
    assert engine.account("acc").order_margin == D(490)
    assert engine.send_order("acc", BTC, "buy", "mkt", "0.0001").accepted
    assert engine.send_order("acc", BTC, "sell", "mkt", "0.1001").accepted


def test_max_position_violation(engine: SimEngine) -> None:
    engine.deposit("acc", 10**9)
    assert engine.send_order("acc", BTC, "buy", "mkt", "1201").status == Status.MAX_POSITION


def test_invalid_requests(engine: SimEngine) -> None:
    send = engine.send_order
    assert send("acc", BTC, "buy", "mkt", "0.00001").status == Status.INVALID_SIZE
    assert send("acc", BTC, "buy", "mkt", "0").status == Status.INVALID_SIZE
    assert send("acc", BTC, "buy", "lmt", "0.1", limit_price="49000.5").status == (
        Status.INVALID_PRICE
    )
    assert send("acc", BTC, "buy", "lmt", "0.1").status == Status.INVALID_PRICE
    assert send("acc", BTC, "buy", "stp", "0.1").status == Status.INVALID_PRICE
    assert send("acc", BTC, "buy", "fok", "0.1").status == Status.INVALID_ORDER_TYPE
    assert send("acc", BTC, "long", "mkt", "0.1").status == Status.INVALID_SIDE
    assert send(
        "acc", BTC, "sell", "stp", "0.1", stop_price=40000, trigger_signal="index"
    ).status == (Status.INVALID_ARGUMENT)
    assert send("acc", "PF_NOPEUSD", "buy", "mkt", "1").status == Status.CONTRACT_NOT_FOUND
    assert send("nobody", BTC, "buy", "mkt", "1").status == Status.INVALID_ACCOUNT
    assert engine.fills() == []


def test_reduce_only_rules(engine: SimEngine) -> None:
    assert engine.send_order("acc", BTC, "sell", "mkt", "0.1", reduce_only=True).status == (
        Status.WOULD_NOT_REDUCE
    )
    _long(engine, "0.3")
    assert engine.send_order("acc", BTC, "buy", "mkt", "0.1", reduce_only=True).status == (
        Status.WOULD_NOT_REDUCE
    )
    stop = engine.send_order("acc", BTC, "sell", "stp", "0.5", stop_price=45000, reduce_only=True)
    assert stop.accepted and stop.order.qty == D("0.3") and stop.reduced_quantity == D("0.2")
    # Partial close by a normal order shrinks the resting reduce-only stop to the position.
    engine.send_order("acc", BTC, "sell", "mkt", "0.1")
    assert engine.get_order(stop.order.order_id).qty == D("0.2")
    assert "order_reduced" in [e.kind for e in engine.events_since(0)]
    # An oversized reduce-only market order closes exactly to flat, never flips.
    close = engine.send_order("acc", BTC, "sell", "mkt", "1", reduce_only=True)
    assert close.reduced_quantity == D("0.8") and close.fills[0].qty == D("0.2")
    assert engine.position("acc", BTC) is None
    # The stop can no longer reduce anything: the venue cancels it.
    cancelled = engine.get_order(stop.order.order_id)
    assert cancelled.state is OrderState.CANCELLED
    assert cancelled.reason == Reason.WOULD_NOT_REDUCE


def test_cancel_order(engine: SimEngine) -> None:
    order = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000).order
    result = engine.cancel_order("acc", order.order_id)
    assert result.status == Status.CANCELLED and result.order.reason == Reason.CANCELLED_BY_USER
    assert engine.cancel_order("acc", order.order_id).status == Status.NOT_FOUND
    assert engine.cancel_order("acc", "nope").status == Status.NOT_FOUND
    filled = engine.send_order("acc", BTC, "buy", "mkt", "0.1").order
    assert engine.cancel_order("acc", filled.order_id).status == Status.FILLED
    engine.create_account("other", 1000)
    mine = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000).order
    assert engine.cancel_order("other", mine.order_id).status == Status.NOT_FOUND
    assert [o.order_id for o in engine.cancel_all("acc")] == [mine.order_id]
    assert engine.open_orders("acc") == []


def test_edit_order(engine: SimEngine) -> None:
    order = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000).order
    edited = engine.edit_order("acc", order.order_id, size="0.2", limit_price=48000)
    assert edited.status == Status.EDITED
    assert (edited.order.qty, edited.order.limit_price) == (D("0.2"), D(48000))
    assert edited.old == order and edited.order.order_id == order.order_id
    assert engine.edit_order("acc", order.order_id, stop_price=47000).status == (
        Status.EDIT_NOT_A_STOP
    )
    taken = engine.edit_order("acc", order.order_id, limit_price=50000)  # now marketable
    assert taken.status == Status.EDITED and taken.fills[0].price == D(50000)
    assert engine.edit_order("acc", order.order_id, size="1").status == Status.EDIT_NOT_FOUND

    stop = engine.send_order("acc", BTC, "sell", "stp", "0.2", stop_price=45000, reduce_only=True)
    moved = engine.edit_order("acc", stop.order.order_id, stop_price=46000)
    assert moved.status == Status.EDITED and moved.order.stop_price == D(46000)
    assert engine.edit_order("acc", stop.order.order_id, stop_price=50000).status == (
        Status.INVALID_PRICE
    )
    assert engine.edit_order("acc", stop.order.order_id, limit_price=45000).status == (
        Status.INVALID_PRICE
    )
    post = engine.send_order("acc", BTC, "sell", "post", "0.1", limit_price=51000).order
    assert engine.edit_order("acc", post.order_id, limit_price=50000).status == (
        Status.POST_WOULD_EXECUTE
    )


def test_venue_cancel_fault_hook(engine: SimEngine) -> None:
    order = engine.send_order("acc", BTC, "buy", "lmt", "0.1", limit_price=49000).order
    seq = engine.last_event_seq
    cancelled = engine.venue_cancel(order.order_id, Reason.CANCELLED_BY_ADMIN)
    assert cancelled is not None and cancelled.state is OrderState.CANCELLED
    (event,) = engine.events_since(seq)
    assert event.kind == "order_cancelled" and event.data["reason"] == "cancelled_by_admin"
    assert engine.venue_cancel(order.order_id) is None
    assert engine.set_price(BTC, 48000, ts=T0 + 1) == []


def test_event_log_is_ordered_and_readable_since_a_sequence(engine: SimEngine) -> None:
    start = engine.last_event_seq
    engine.send_order("acc", BTC, "buy", "mkt", "0.1")
    engine.send_order("acc", BTC, "sell", "mkt", "0.1", reduce_only=True)
    engine.send_order("acc", BTC, "sell", "mkt", "0.1", reduce_only=True)
    events = engine.events_since(start)
    assert [e.seq for e in events] == list(range(start + 1, start + 1 + len(events)))
    assert [e.kind for e in events] == [
        "order_accepted",
        "fill",
        "order_updated",
        "position",
        "order_accepted",
        "fill",
        "order_updated",
        "position",
        "order_rejected",
    ]
    assert events[-1].data["status"] == Status.WOULD_NOT_REDUCE
    assert engine.events_since(events[-2].seq) == [events[-1]]
    assert engine.events_since(engine.last_event_seq) == []


def test_an_orders_versions_are_the_replaced_fields() -> None:
    engine = make_engine()
    placed = engine.send_order("acc", BTC, "buy", "lmt", "2", limit_price=49_000, cli_ord_id="c")
    assert placed.order is not None
    order = replace(placed.order, created_ts=T0 - 7, updated_ts=T0 - 3)  # told apart
    assert order is not None
    assert order.accepted("x", 7) == replace(order, order_id="x", priority=7, reason=Reason.NEW)
    part = order.executed(Decimal("0.5"), Decimal(49_000), T0 + 5)
    assert part == replace(
        order,
        filled=Decimal("0.5"),
        filled_notional=Decimal(24_500),
        state=OrderState.PARTIALLY_FILLED,
        updated_ts=T0 + 5,
        reason=Reason.PARTIAL_FILL,
    )
    assert part.executed(Decimal("1.5"), Decimal(48_000), T0 + 6).state is OrderState.FILLED
    gone = order.cancelled(T0 + 9, Reason.CANCELLED_BY_USER)
    assert gone == replace(
        order, state=OrderState.CANCELLED, updated_ts=T0 + 9, reason=Reason.CANCELLED_BY_USER
    )
