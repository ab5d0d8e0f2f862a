"""The in-process exchange port: mapping of engine values, errors, faults, candles, threads."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.retry import RateLimited, RetryPolicy
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.inprocess_faults import FaultPlan
from domain.errors import AmbiguousOutcome, Fatal, PrecisionError, Rejected, Temporary
from domain.models import (
    Candle,
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
)
from domain.ports import ExchangePort
from tests.adapters.conformance.harness import Fault
from tests.adapters.conformance.inprocess_harness import make_inprocess_harness
from tests.adapters.sim.conftest import BTC, T0, make_engine

UBTC = "BTC/USD:USD"
UETH = "ETH/USD:USD"
MIN = 60_000


class Rig:
    """An engine (BTC 50,000, ETH 3,000, no slippage), its port, staged faults, recorded waits."""

    def __init__(self, engine: SimEngine | None = None, account: str = "acc") -> None:
        self.engine = engine or make_engine()
        self.faults = FaultPlan()
        self.sleeps: list[float] = []
        policy = RetryPolicy(sleep=self.sleeps.append, rng=random.Random(1))
        self.port = InProcessExchange(self.engine, account, retry=policy, faults=self.faults)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def order(
    client_id: str = "bst-p1-en-1",
    *,
    symbol: str = UBTC,
    type_: OrderType = OrderType.MARKET,
    side: Side = Side.BUY,
    qty: str = "0.1",
    price: str | None = None,
    trigger: str | None = None,
    reduce_only: bool = False,
    role: OrderRole = OrderRole.ENTRY,
) -> Order:
    return Order(
        client_id=client_id,
        symbol=symbol,
        role=role,
        type=type_,
        side=side,
        qty=Decimal(qty),
        reduce_only=reduce_only,
        status=OrderStatus.SENDING,
        price=None if price is None else Decimal(price),
        trigger_price=None if trigger is None else Decimal(trigger),
    )


def stop(client_id: str = "bst-p1-sl-1", trigger: str = "45000", qty: str = "0.1") -> Order:
    return order(
        client_id,
        type_=OrderType.STOP,
        side=Side.SELL,
        qty=qty,
        trigger=trigger,
        reduce_only=True,
        role=OrderRole.STOP,
    )


# ---------------------------------------------------------------------- instruments and reads
def test_port_protocol_and_unified_instruments(rig: Rig) -> None:
    assert isinstance(rig.port, ExchangePort)
    assert rig.port.name == "sim"
    instruments = rig.port.instruments()
    btc = instruments[UBTC]
    assert btc.symbol == UBTC
    assert btc.tick_size == Decimal(1)
    assert btc.lot_size == Decimal("0.0001")
    assert all(key == inst.symbol for key, inst in instruments.items())
    assert rig.engine.instruments[BTC].instrument.symbol == BTC  # the engine's copy is untouched


def test_market_entry_maps_order_fill_position_and_account(rig: Rig) -> None:
    placed = rig.port.place_order(order())
    assert placed.status is OrderStatus.FILLED
    assert placed.filled_qty == Decimal("0.1")
    assert (placed.role, placed.position_id) == (OrderRole.ENTRY, "p1")
    assert placed.symbol == UBTC
    engine_order = rig.engine.get_order(placed.exchange_id or "")
    assert engine_order is not None
    assert engine_order.cli_ord_id == "bst-p1-en-1"

    [fill] = rig.port.fills()
    assert (fill.symbol, fill.client_id, fill.exchange_order_id) == (
        UBTC,
        "bst-p1-en-1",
        placed.exchange_id,
    )
    assert fill.price == Decimal(50000)
    assert fill.fee == Decimal("2.5")  # 0.1 * 50,000 * 0.05 % taker
    [pos] = rig.port.positions()
    assert (pos.symbol, pos.side, pos.qty, pos.entry_price) == (
        UBTC,
        PositionSide.LONG,
        Decimal("0.1"),
        Decimal(50000),
    )
    state = rig.port.account()
    assert state.currency == "USD"
    assert state.equity == Decimal(100000) - Decimal("2.5")


def test_fills_filter_by_time_and_symbol(rig: Rig) -> None:
    rig.port.place_order(order())
    rig.engine.advance_time(T0 + 5 * MIN)
    rig.port.place_order(order("bst-p2-en-1", symbol=UETH, qty="1"))
    assert [f.symbol for f in rig.port.fills()] == [UBTC, UETH]
    assert [f.symbol for f in rig.port.fills(since=T0 + 5 * MIN)] == [UETH]
    assert [f.symbol for f in rig.port.fills(symbol=UBTC)] == [UBTC]


def test_open_orders_carry_roles_from_client_ids_or_types(rig: Rig) -> None:
    rig.port.place_order(order())
    rig.port.place_order(stop())
    rig.port.place_order(
        order(
            "bst-p1-tp-1",
            type_=OrderType.LIMIT,
            side=Side.SELL,
            price="60000",
            reduce_only=True,
            role=OrderRole.TAKE_PROFIT,
        )
    )
    rig.engine.send_order("acc", BTC, "sell", "take_profit", "0.05", stop_price=58000)
    rig.engine.send_order("acc", BTC, "buy", "lmt", "0.05", limit_price=40000, cli_ord_id="man")
    got = {(o.client_id, o.role, o.position_id, o.type) for o in rig.port.open_orders(UBTC)}
    assert got == {
        ("bst-p1-sl-1", OrderRole.STOP, "p1", OrderType.STOP),
        ("bst-p1-tp-1", OrderRole.TAKE_PROFIT, "p1", OrderType.LIMIT),
        ("", OrderRole.TAKE_PROFIT, None, OrderType.TAKE_PROFIT),
        ("man", OrderRole.ENTRY, None, OrderType.LIMIT),
    }
    assert all(o.status is OrderStatus.ACKED for o in rig.port.open_orders())
    assert rig.port.open_orders(UETH) == []
    resting = next(o for o in rig.port.open_orders() if o.client_id == "bst-p1-sl-1")
    assert (resting.trigger_price, resting.price, resting.reduce_only) == (
        Decimal(45000),
        None,
        True,
    )


# ---------------------------------------------------------------------- precision and rejections
@pytest.mark.parametrize(
    "bad",
    [
        order(qty="0.00015"),  # off the lot
        order(qty="0"),  # below the minimum
        order(type_=OrderType.LIMIT, price="49999.5"),  # off the tick
        order(type_=OrderType.LIMIT, price="-1"),
        order(type_=OrderType.LIMIT),  # a limit order with no price
        stop(trigger="45000.5"),
    ],
)
def test_off_grid_orders_are_refused_before_the_engine(rig: Rig, bad: Order) -> None:
    rig.faults.add("timeout_before_accept")
    seq = rig.engine.last_event_seq
    with pytest.raises(PrecisionError):
        rig.port.place_order(bad)
    assert rig.engine.last_event_seq == seq
    assert rig.faults.pending() == 1  # refused locally: no fault consumed


def test_unsent_prices_are_not_checked(rig: Rig) -> None:
    placed = rig.port.place_order(replace(order(), price=Decimal("49999.5")))
    assert placed.status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: order(qty="25"), "insufficientAvailableFunds"),  # 125k margin at 10x > 100k
        (lambda: stop(trigger="51000"), "invalidPrice"),  # a sell stop above the last price
        (
            lambda: order(side=Side.SELL, reduce_only=True, role=OrderRole.EXIT),
            "wouldNotReducePosition",
        ),
    ],
)
def test_engine_rejections_become_rejected_with_the_venue_status(
    rig: Rig, make: Callable[[], Order], reason: str
) -> None:
    with pytest.raises(Rejected) as err:
        rig.port.place_order(make())
    assert err.value.reason == reason
    assert rig.port.open_orders() == []


def test_unknown_symbol_is_rejected(rig: Rig) -> None:
    with pytest.raises(Rejected) as err:
        rig.port.place_order(order(symbol="NOPE/USD:USD"))
    assert err.value.reason == "contractNotFound"
    with pytest.raises(Rejected):
        rig.port.open_orders("NOPE/USD:USD")


def test_duplicate_client_id_of_an_open_order_is_ambiguous(rig: Rig) -> None:
    limit = order(type_=OrderType.LIMIT, price="40000")
    rig.port.place_order(limit)
    with pytest.raises(AmbiguousOutcome, match="look"):
        rig.port.place_order(limit)
    assert len(rig.port.open_orders()) == 1


def test_unknown_account_is_fatal_without_retries() -> None:
    rig = Rig(account="nobody")
    with pytest.raises(Fatal):
        rig.port.positions()
    with pytest.raises(Fatal):
        rig.port.place_order(order())
    with pytest.raises(Fatal):
        rig.port.cancel_order(UBTC, client_id="x")
    assert rig.sleeps == []
    assert rig.port.instruments()  # public data needs no account


def test_set_leverage(rig: Rig) -> None:
    rig.port.set_leverage(UBTC, Decimal(5))
    rig.port.place_order(order())
    assert rig.port.positions()[0].leverage == Decimal(5)
    with pytest.raises(Rejected):
        rig.port.set_leverage(UBTC, Decimal(500))


# ---------------------------------------------------------------------- cancel and look-up
def test_cancel_by_exchange_id_and_client_id(rig: Rig) -> None:
    rig.port.place_order(order())
    first = rig.port.place_order(stop())
    second = rig.port.place_order(stop("bst-p1-sl-2", trigger="44000"))
    cancelled = rig.port.cancel_order(UBTC, exchange_id=first.exchange_id)
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.client_id == "bst-p1-sl-1"
    assert rig.port.cancel_order(UBTC, exchange_id=first.exchange_id) is None
    assert rig.port.cancel_order(UETH, client_id="bst-p1-sl-2") is None  # another symbol
    by_client = rig.port.cancel_order(UBTC, client_id="bst-p1-sl-2", urgent=True)
    assert by_client is not None
    assert by_client.exchange_id == second.exchange_id
    assert rig.port.cancel_order(UBTC, client_id="never-sent") is None
    assert rig.port.cancel_order(UBTC, exchange_id="no-such-id") is None
    assert rig.port.open_orders() == []
    with pytest.raises(ValueError, match="exchange_id or client_id"):
        rig.port.cancel_order(UBTC)


def test_cancel_of_a_filled_order_is_none(rig: Rig) -> None:
    placed = rig.port.place_order(order())
    assert rig.port.cancel_order(UBTC, exchange_id=placed.exchange_id) is None


def test_order_by_client_id_open_ended_and_unknown(rig: Rig) -> None:
    rig.port.place_order(order())
    rig.port.place_order(stop())
    found = rig.port.order_by_client_id(UBTC, "bst-p1-sl-1")
    assert found is not None
    assert found.status is OrderStatus.ACKED
    rig.port.cancel_order(UBTC, client_id="bst-p1-sl-1")
    ended = rig.port.order_by_client_id(UBTC, "bst-p1-sl-1")
    assert ended is not None
    assert ended.status is OrderStatus.CANCELLED
    filled = rig.port.order_by_client_id(UBTC, "bst-p1-en-1", urgent=True)
    assert filled is not None
    assert (filled.status, filled.filled_qty) == (OrderStatus.FILLED, Decimal("0.1"))
    assert rig.port.order_by_client_id(UBTC, "bst-p9-en-1") is None
    assert rig.port.order_by_client_id(UETH, "bst-p1-en-1") is None


def test_order_by_client_id_prefers_the_open_order_over_an_ended_one(rig: Rig) -> None:
    rig.port.place_order(order())
    rig.port.place_order(stop())
    rig.port.cancel_order(UBTC, client_id="bst-p1-sl-1")
    again = rig.port.place_order(stop(trigger="46000"))
    found = rig.port.order_by_client_id(UBTC, "bst-p1-sl-1")
    assert found is not None
    assert (found.exchange_id, found.status) == (again.exchange_id, OrderStatus.ACKED)


def test_order_known_only_through_fills_is_synthesized() -> None:
    engine = make_engine()
    engine.config = replace(engine.config, max_closed_orders=1)
    rig = Rig(engine)
    rig.engine.send_order(
        "acc", BTC, "buy", "lmt", "0.3", limit_price=49000, cli_ord_id="bst-p1-en-1"
    )
    rig.engine.set_price(BTC, 48900, volume="0.1")  # no participation limit: fills all 0.3
    rig.port.place_order(order("bst-p2-en-1", symbol=UETH, qty="1"))  # evicts p1's order
    assert rig.engine.orders_by_cli_ord_id("acc", "bst-p1-en-1") == []
    found = rig.port.order_by_client_id(UBTC, "bst-p1-en-1")
    assert found is not None
    assert (found.status, found.qty, found.filled_qty) == (
        OrderStatus.FILLED,
        Decimal("0.3"),
        Decimal("0.3"),
    )
    assert (found.role, found.position_id, found.type, found.side) == (
        OrderRole.ENTRY,
        "p1",
        OrderType.LIMIT,
        Side.BUY,
    )


# ---------------------------------------------------------------------- faults
def test_timeout_after_accept_applies_then_is_ambiguous(rig: Rig) -> None:
    rig.faults.add(Fault.TIMEOUT_AFTER_ACCEPT)
    with pytest.raises(AmbiguousOutcome):
        rig.port.place_order(order())
    assert rig.faults.pending() == 0
    found = rig.port.order_by_client_id(UBTC, "bst-p1-en-1")
    assert found is not None
    assert found.status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault.TIMEOUT_BEFORE_ACCEPT, AmbiguousOutcome), (Fault.RATE_LIMIT_WRITE, RateLimited)],
)
def test_send_faults_that_apply_nothing(rig: Rig, fault: Fault, error: type[Exception]) -> None:
    rig.faults.add(fault)
    seq = rig.engine.last_event_seq
    with pytest.raises(error):
        rig.port.place_order(order())
    assert rig.engine.last_event_seq == seq
    assert rig.port.order_by_client_id(UBTC, "bst-p1-en-1") is None
    assert rig.sleeps == []  # writes are never retried
    assert rig.port.place_order(order()).status is OrderStatus.FILLED


def test_reject_stop_hits_only_trigger_orders(rig: Rig) -> None:
    rig.faults.add(Fault.REJECT_STOP)
    rig.port.place_order(order())  # a market entry passes and leaves the fault staged
    assert rig.faults.pending() == 1
    with pytest.raises(Rejected) as err:
        rig.port.place_order(stop())
    assert err.value.reason == "invalidPrice"
    assert rig.faults.pending() == 0
    assert rig.port.open_orders() == []
    assert rig.port.place_order(stop()).status is OrderStatus.ACKED


def test_read_5xx_is_retried_with_recorded_back_off(rig: Rig) -> None:
    rig.faults.add(Fault.READ_5XX, times=2)
    assert rig.port.positions() == []
    assert len(rig.sleeps) == 2
    assert rig.faults.pending() == 0
    rig.faults.add(Fault.READ_5XX, times=10)
    with pytest.raises(Temporary):
        rig.port.positions()
    assert rig.faults.pending() == 10 - RetryPolicy().attempts
    rig.port.open_orders()  # other reads are not affected


def test_rate_limit_read_hits_open_orders_only(rig: Rig) -> None:
    rig.faults.add(Fault.RATE_LIMIT_READ)
    rig.port.positions()
    assert rig.faults.pending() == 1
    assert rig.port.open_orders() == []
    assert len(rig.sleeps) == 1
    assert rig.faults.pending() == 0


def test_fault_plan_consumes_in_insertion_order_and_validates() -> None:
    plan = FaultPlan()
    plan.add("rate_limit_write")
    plan.add("timeout_before_accept", 2)
    assert plan.pending() == 3
    assert plan.take(["timeout_before_accept", "rate_limit_write"], "t") == "rate_limit_write"
    assert plan.take(["read_5xx"], "t") is None
    assert plan.take(["timeout_before_accept"], "t") == "timeout_before_accept"
    plan.clear()
    assert plan.pending() == 0
    with pytest.raises(ValueError, match="unknown"):
        plan.add("explode")
    with pytest.raises(ValueError, match="at least 1"):
        plan.add("read_5xx", 0)


# ---------------------------------------------------------------------- candles
def feed(engine: SimEngine, start: int, closes: list[float]) -> None:
    for i, close in enumerate(closes):
        t = start + i * MIN
        engine.on_candles([Candle(BTC, "1m", t, close, close + 10, close - 10, close, 1.5)])


def test_ohlcv_aggregates_closed_utc_aligned_buckets(rig: Rig) -> None:
    start = T0 + MIN  # the conftest tick opened a bar at T0
    feed(rig.engine, start, [50000 + 100 * i for i in range(11)])  # minutes 1..11
    one = rig.port.ohlcv(UBTC, "1m", since=start)
    assert [c.open_time for c in one] == [start + i * MIN for i in range(11)]
    assert all(c.symbol == UBTC and c.timeframe == "1m" and c.closed for c in one)
    five = rig.port.ohlcv(UBTC, "5m", since=T0)
    assert [c.open_time for c in five] == [T0, T0 + 5 * MIN]  # T0+10m is still open
    second = five[1]
    assert (second.open, second.close) == (50400.0, 50800.0)
    assert (second.high, second.low, second.volume) == (50810.0, 50390.0, 7.5)
    assert rig.port.ohlcv(UBTC, "5m", since=T0 + MIN) == [five[1]]  # since is inclusive
    assert rig.port.ohlcv(UBTC, "1m", since=start, until=start + 2 * MIN) == one[:3]
    assert rig.port.ohlcv(UBTC, "1h", since=T0) == []


def test_ohlcv_excludes_a_bar_still_forming_and_unknown_timeframes(rig: Rig) -> None:
    rig.engine.set_price(BTC, 50100, ts=T0 + 90_000)
    assert [c.open_time for c in rig.port.ohlcv(UBTC, "1m", since=T0)] == [T0]
    with pytest.raises(Rejected):
        rig.port.ohlcv(UBTC, "7m", since=T0)


# ---------------------------------------------------------------------- threads and harness
def test_concurrent_callers_keep_the_engine_consistent() -> None:
    rig = Rig(make_engine(balance="10000000"))
    errors: list[BaseException] = []

    def trade(worker: int) -> None:
        try:
            for i in range(40):
                cid = f"bst-w{worker}x{i}-en-1"
                rig.port.place_order(order(cid, type_=OrderType.LIMIT, price="40000"))
                rig.port.open_orders()
                rig.port.cancel_order(UBTC, client_id=cid)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=trade, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for i in range(40):
        with rig.port.lock:
            rig.engine.set_price(BTC, 50000 + i)
    for t in threads:
        t.join()
    assert errors == []
    assert rig.port.open_orders() == []
    assert len(rig.engine.orders_by_cli_ord_id("acc", "bst-w3x39-en-1")) == 1


def test_harness_warm_up_prices_and_faults(tmp_path: Path) -> None:
    harness = make_inprocess_harness(tmp_path)
    port = harness.port
    assert len(port.ohlcv(UBTC, "1m", since=0)) == 180
    assert len(port.ohlcv(UBTC, "1h", since=0)) == 3
    assert harness.now_ms() == T0 + 180 * MIN
    harness.set_price(UBTC, Decimal(60000))
    harness.advance_minutes(3)
    last = port.ohlcv(UBTC, "1m", since=0)[-3:]
    assert last[0].open == 60000.0
    assert all(abs(c.close - 60000) < 600 for c in last)  # continues from the set price
    harness.inject(Fault.READ_5XX)
    assert harness.pending_faults() == 1
    port.positions()
    assert harness.pending_faults() == 0
    assert len(harness.slept()) == 1
    harness.inject(Fault.RATE_LIMIT_READ, times=3)
    harness.clear_faults()
    assert harness.pending_faults() == 0
    harness.close()
