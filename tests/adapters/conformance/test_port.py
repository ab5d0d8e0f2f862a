"""The exchange port's contract, run against every implementation (see conftest)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from domain.errors import AmbiguousOutcome, PrecisionError, Rejected, Temporary
from domain.models import Order, OrderRole, OrderStatus, OrderType, PositionSide, Side
from domain.ports import ExchangePort
from domain.position_data import parse_client_order_id
from tests.adapters.conformance.harness import BTC, ETH, Fault, VenueHarness

D = Decimal


def order(
    client_id: str,
    side: Side,
    qty: str,
    kind: OrderType = OrderType.MARKET,
    *,
    price: str | None = None,
    trigger: str | None = None,
    reduce_only: bool = False,
    symbol: str = BTC,
) -> Order:
    parsed = parse_client_order_id(client_id)
    assert parsed is not None
    return Order(
        client_id=client_id,
        symbol=symbol,
        role=parsed[1],
        type=kind,
        side=side,
        qty=D(qty),
        reduce_only=reduce_only,
        status=OrderStatus.SENDING,
        price=None if price is None else D(price),
        trigger_price=None if trigger is None else D(trigger),
        position_id=parsed[0],
    )


@pytest.fixture
def port(venue: VenueHarness) -> ExchangePort:
    venue.set_price(BTC, D(50_000))
    venue.set_price(ETH, D(3_000))
    return venue.port


def long_btc(port: ExchangePort, pid: str, qty: str = "0.01") -> Order:
    return port.place_order(order(f"bst-{pid}-en-1", Side.BUY, qty))


# ------------------------------------------------------------------ reference data and reads


def test_implements_the_port(port: ExchangePort) -> None:
    assert isinstance(port, ExchangePort)
    assert port.name


def test_instruments_are_keyed_by_unified_symbol_on_a_decimal_grid(port: ExchangePort) -> None:
    instruments = port.instruments()
    assert {BTC, ETH} <= set(instruments)
    for symbol, inst in instruments.items():
        assert inst.symbol == symbol
        assert isinstance(inst.tick_size, Decimal)
        assert inst.lot_size > 0
        assert inst.min_size >= inst.lot_size


def test_account_reports_equity_and_margin(port: ExchangePort) -> None:
    account = port.account()
    assert account.equity > 0
    assert 0 <= account.available_margin <= account.equity
    assert account.used_margin >= 0


def test_equity_counts_open_positions_at_the_mark(venue: VenueHarness, port: ExchangePort) -> None:
    """Equity is what the account is worth with its positions at the mark (balance plus their
    unrealized PnL): what risk sizes from and the daily loss limit is measured on."""
    long_btc(port, "c0", "0.1")
    opened = port.account()
    venue.set_price(BTC, D(51_000))
    moved = port.account()
    (position,) = [p for p in port.positions() if p.symbol == BTC]
    assert position.unrealized_pnl > 0
    assert moved.unrealized_pnl == position.unrealized_pnl
    assert moved.equity - moved.unrealized_pnl == opened.equity - opened.unrealized_pnl
    assert moved.equity > opened.equity


def test_ohlcv_returns_closed_consecutive_candles(venue: VenueHarness, port: ExchangePort) -> None:
    venue.advance_minutes(20)
    now = venue.now_ms()
    candles = port.ohlcv(BTC, "1m", since=now - 150 * 60_000)
    assert len(candles) >= 149  # the newest may still be forming and is left out
    assert candles[-1].open_time + 60_000 <= now
    assert all(b.open_time - a.open_time == 60_000 for a, b in itertools.pairwise(candles))
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in candles)
    five = port.ohlcv(BTC, "5m", since=candles[0].open_time)
    by_time = {c.open_time: c for c in candles}
    for bar in five:
        minutes = [by_time.get(bar.open_time + i * 60_000) for i in range(5)]
        if all(minutes):
            assert bar.high == max(m.high for m in minutes if m)
            assert bar.low == min(m.low for m in minutes if m)
    assert port.ohlcv(BTC, "1m", since=candles[-1].open_time + 60_000) == []


# ------------------------------------------------------------------ orders


def test_market_entry_fills_and_shows_in_positions_and_fills(port: ExchangePort) -> None:
    placed = long_btc(port, "c1")
    assert placed.exchange_id
    assert placed.status is OrderStatus.FILLED
    assert placed.filled_qty == D("0.01")
    (position,) = [p for p in port.positions() if p.symbol == BTC]
    assert (position.side, position.qty) == (PositionSide.LONG, D("0.01"))
    mine = [f for f in port.fills() if f.client_id == "bst-c1-en-1"]
    assert sum(f.qty for f in mine) == D("0.01")
    assert {f.side for f in mine} == {Side.BUY}
    assert all(f.symbol == BTC and f.price > 0 for f in mine)


def test_stop_and_take_profit_rest_as_trigger_orders(port: ExchangePort) -> None:
    long_btc(port, "c2")
    stop = port.place_order(
        order("bst-c2-sl-1", Side.SELL, "0.01", OrderType.STOP, trigger="45000", reduce_only=True)
    )
    take = port.place_order(
        order(
            "bst-c2-tp-1",
            Side.SELL,
            "0.01",
            OrderType.TAKE_PROFIT,
            trigger="55000",
            reduce_only=True,
        )
    )
    assert stop.status is OrderStatus.ACKED
    assert take.status is OrderStatus.ACKED
    working = {o.client_id: o for o in port.open_orders(BTC)}
    resting = working["bst-c2-sl-1"]
    assert (resting.role, resting.type, resting.position_id) == (
        OrderRole.STOP,
        OrderType.STOP,
        "c2",
    )
    assert resting.trigger_price == D(45_000)
    assert resting.reduce_only
    assert working["bst-c2-tp-1"].role is OrderRole.TAKE_PROFIT


def test_cancel_by_client_id_and_by_exchange_id(port: ExchangePort) -> None:
    long_btc(port, "c3")
    stop = port.place_order(
        order("bst-c3-sl-1", Side.SELL, "0.01", OrderType.STOP, trigger="45000", reduce_only=True)
    )
    limit = port.place_order(
        order("bst-c3x-en-1", Side.BUY, "0.01", OrderType.LIMIT, price="40000")
    )
    cancelled = port.cancel_order(BTC, client_id="bst-c3-sl-1", urgent=True)
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert port.cancel_order(BTC, client_id="bst-c3-sl-1") is None  # not open any more
    assert port.cancel_order(BTC, exchange_id=limit.exchange_id) is not None
    assert port.cancel_order(BTC, exchange_id=stop.exchange_id) is None
    assert [o for o in port.open_orders(BTC) if o.client_id.startswith("bst-c3")] == []


def test_order_by_client_id_open_filled_and_unknown(port: ExchangePort) -> None:
    port.place_order(order("bst-c4-en-1", Side.BUY, "0.01", OrderType.LIMIT, price="40000"))
    long_btc(port, "c5")
    working = port.order_by_client_id(BTC, "bst-c4-en-1")
    assert working is not None
    assert working.status is OrderStatus.ACKED
    assert working.exchange_id
    done = port.order_by_client_id(BTC, "bst-c5-en-1", urgent=True)
    assert done is not None
    assert done.status is OrderStatus.FILLED
    assert done.filled_qty == D("0.01")
    assert port.order_by_client_id(BTC, "bst-nope-en-1") is None


def test_off_grid_orders_are_refused_before_anything_is_sent(port: ExchangePort) -> None:
    lot = port.instruments()[BTC].lot_size
    tick = port.instruments()[BTC].tick_size
    with pytest.raises(PrecisionError):
        port.place_order(order("bst-c6-en-1", Side.BUY, str(lot * D("1.5"))))
    with pytest.raises(PrecisionError):
        port.place_order(
            order("bst-c6-en-2", Side.BUY, "0.01", OrderType.LIMIT, price=str(D(40_000) + tick / 2))
        )
    assert port.order_by_client_id(BTC, "bst-c6-en-1") is None
    assert port.order_by_client_id(BTC, "bst-c6-en-2") is None


def test_reduce_only_never_increases_or_flips(port: ExchangePort) -> None:
    long_btc(port, "c7")
    port.place_order(order("bst-c7-ex-1", Side.SELL, "0.02", reduce_only=True))
    assert [p for p in port.positions() if p.symbol == BTC] == []  # flat, not short
    with pytest.raises(Rejected):
        port.place_order(order("bst-c7-ex-2", Side.SELL, "0.01", reduce_only=True))
    assert [p for p in port.positions() if p.symbol == BTC] == []


def test_insufficient_margin_is_rejected(port: ExchangePort) -> None:
    with pytest.raises(Rejected):
        port.place_order(order("bst-c8-en-1", Side.BUY, "1000"))
    assert [p for p in port.positions() if p.symbol == BTC] == []


def test_stop_that_would_trigger_immediately_is_rejected_with_the_venue_reason(
    port: ExchangePort,
) -> None:
    long_btc(port, "c9")
    with pytest.raises(Rejected) as err:
        port.place_order(
            order(
                "bst-c9-sl-1", Side.SELL, "0.01", OrderType.STOP, trigger="55000", reduce_only=True
            )
        )
    assert "invalidPrice" in err.value.reason


def test_set_leverage(port: ExchangePort) -> None:
    port.set_leverage(BTC, D(5))
    port.set_leverage(BTC, D(5))  # idempotent


def test_fills_since_a_time(venue: VenueHarness, port: ExchangePort) -> None:
    long_btc(port, "d1")
    first = [f for f in port.fills() if f.client_id == "bst-d1-en-1"]
    venue.advance_minutes(2)
    long_btc(port, "d2")
    later = port.fills(since=max(f.ts for f in first) + 1)
    assert {f.client_id for f in later} == {"bst-d2-en-1"}


# ------------------------------------------------------------------ faults


def test_timeout_after_accept_is_ambiguous_and_resolves_to_the_one_real_order(
    venue: VenueHarness, port: ExchangePort
) -> None:
    venue.inject(Fault.TIMEOUT_AFTER_ACCEPT)
    with pytest.raises(AmbiguousOutcome):
        port.place_order(order("bst-e1-en-1", Side.BUY, "0.01", OrderType.LIMIT, price="40000"))
    assert venue.pending_faults() == 0
    found = port.order_by_client_id(BTC, "bst-e1-en-1")
    assert found is not None
    assert found.status is OrderStatus.ACKED
    assert [o.client_id for o in port.open_orders(BTC)].count("bst-e1-en-1") == 1


def test_timeout_before_accept_is_ambiguous_and_resolves_to_nothing(
    venue: VenueHarness, port: ExchangePort
) -> None:
    venue.inject(Fault.TIMEOUT_BEFORE_ACCEPT)
    with pytest.raises(AmbiguousOutcome):
        port.place_order(order("bst-e2-en-1", Side.BUY, "0.01", OrderType.LIMIT, price="40000"))
    assert port.order_by_client_id(BTC, "bst-e2-en-1") is None
    assert port.open_orders(BTC) == []


def test_server_error_on_a_read_is_retried(venue: VenueHarness, port: ExchangePort) -> None:
    long_btc(port, "e3")
    venue.inject(Fault.READ_5XX, times=2)
    positions = port.positions()
    assert [p.symbol for p in positions] == [BTC]
    assert venue.pending_faults() == 0
    assert len(venue.slept()) >= 2


def test_rate_limited_read_backs_off_then_succeeds(venue: VenueHarness, port: ExchangePort) -> None:
    venue.inject(Fault.RATE_LIMIT_READ)
    assert port.open_orders(BTC) == []
    assert venue.pending_faults() == 0
    assert venue.slept()


def test_rate_limited_write_is_temporary_and_places_nothing(
    venue: VenueHarness, port: ExchangePort
) -> None:
    venue.inject(Fault.RATE_LIMIT_WRITE)
    with pytest.raises(Temporary):
        port.place_order(order("bst-e4-en-1", Side.BUY, "0.01", OrderType.LIMIT, price="40000"))
    assert venue.slept() == []  # writes are never retried inside the port
    assert port.order_by_client_id(BTC, "bst-e4-en-1") is None


def test_injected_stop_reject_is_rejected_with_the_venue_reason(
    venue: VenueHarness, port: ExchangePort
) -> None:
    long_btc(port, "e5")
    venue.inject(Fault.REJECT_STOP)
    with pytest.raises(Rejected) as err:
        port.place_order(
            order(
                "bst-e5-sl-1", Side.SELL, "0.01", OrderType.STOP, trigger="45000", reduce_only=True
            )
        )
    assert "invalidPrice" in err.value.reason
    assert port.order_by_client_id(BTC, "bst-e5-sl-1") is None
