"""FeedCore without a network: subscriptions, resume after the trade ack, repairs, staleness,
tickers that never make candles, and resilience to bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from adapters.marketdata import (
    CandleClosed,
    FeedConfig,
    FeedCore,
    FeedEvent,
    FeedFresh,
    FeedStale,
    MarkPrice,
)
from adapters.marketdata.bench import measure_feed_throughput
from domain.models import Candle

T0 = 1_735_689_600_000
M = 60_000
SYMBOLS = {"BTC/USD:USD": "PF_XBTUSD", "ETH/USD:USD": "PF_ETHUSD"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def make(**config: Any) -> tuple[FeedCore, list[FeedEvent], Clock]:
    events: list[FeedEvent] = []
    clock = Clock()
    options = {"close_grace_ms": 0, "stale_after_ms": 1_000, "warmup_bars": 3, **config}
    core = FeedCore(SYMBOLS, ("1m", "5m"), events.append, clock, FeedConfig(**options))
    return core, events, clock


def send(core: FeedCore, **message: Any) -> None:
    core.on_message(json.dumps(message))


def ticker(core: FeedCore, product: str, ts: int, mark: float = 100.5) -> None:
    send(core, feed="ticker", product_id=product, time=ts, markPrice=mark, last=mark)


def trade(core: FeedCore, product: str, ts: int, price: float, qty: float = 1.0) -> None:
    send(core, feed="trade", product_id=product, time=ts, price=price, qty=qty, type="fill")


def go_live(core: FeedCore, at: int = T0) -> None:
    """Connect, ack, resume both symbols at ``at``, run the repairs with no history."""
    core.on_connected()
    send(core, event="subscribed", feed="trade", product_ids=list(SYMBOLS.values()))
    for product in SYMBOLS.values():
        ticker(core, product, at)
    send(core, feed="heartbeat", time=at + M)
    for request in core.repairs_due():
        core.apply_repair(request, {})
    assert not any(b.repair_pending for b in core.builders.values())


def candles(events: list[FeedEvent]) -> list[CandleClosed]:
    return [e for e in events if isinstance(e, CandleClosed)]


def test_subscribes_to_trades_first_then_tickers_and_heartbeat() -> None:
    core, _, _ = make()
    subs = core.subscriptions()
    assert [s["feed"] for s in subs] == ["trade", "ticker", "heartbeat"]
    assert subs[0]["product_ids"] == ["PF_XBTUSD", "PF_ETHUSD"]


def test_tickers_give_mark_prices_and_never_make_candles() -> None:
    core, events, _ = make()
    go_live(core)
    events.clear()
    for k in range(1, 10):
        ticker(core, "PF_XBTUSD", T0 + k * M + 500, mark=100.0 + k)
    assert candles(events) == []
    assert events[0] == MarkPrice("BTC/USD:USD", Decimal("101.0"), T0 + M + 500)
    assert all(isinstance(e, MarkPrice) for e in events)


def test_symbols_resume_only_after_the_trade_subscription_is_acknowledged() -> None:
    core, _, _ = make()
    core.on_connected()
    ticker(core, "PF_XBTUSD", T0 + 5_000)
    assert core.builders["BTC/USD:USD"].suspended
    send(core, event="subscribed", feed="trade", product_ids=["PF_XBTUSD"])
    send(core, feed="trade_snapshot", product_id="PF_XBTUSD", trades=[])  # no time: no resume
    assert core.builders["BTC/USD:USD"].suspended
    ticker(core, "PF_XBTUSD", T0 + 6_000)
    assert core.builders["BTC/USD:USD"].live_from == T0 + M


def test_warm_up_and_gap_repair_are_requested_as_the_venue_closes_minutes() -> None:
    core, events, _ = make()
    core.on_connected()
    send(core, event="subscribed", feed="trade")
    ticker(core, "PF_XBTUSD", T0 + 10 * M + 5_000)  # live from 00:11; 00:10 is still open
    requests = core.repairs_due()
    assert [(r.symbol, r.until, r.plan) for r in requests] == [
        ("BTC/USD:USD", T0 + 10 * M, {"1m": T0 + 7 * M, "5m": T0 - 5 * M})
    ]
    assert core.repairs_due() == []  # in flight
    history = {
        "1m": [Candle("PF_XBTUSD", "1m", T0 + k * M, 1, 2, 0.5, 1.5, 3) for k in range(7, 10)]
    }
    core.apply_repair(requests[0], history)
    assert [e.candle.open_time for e in candles(events) if e.timeframe == "1m"] == [
        T0 + k * M for k in (7, 8, 9)
    ]
    trade(core, "PF_XBTUSD", T0 + 11 * M + 1, 10.0)  # a live trade closes 00:10 at the venue
    (tail,) = core.repairs_due()
    assert tail.plan == {"1m": T0 + 10 * M}


def test_a_failed_repair_is_retried_after_the_retry_delay_and_outdated_ones_are_ignored() -> None:
    core, events, clock = make(repair_retry_s=2.0)
    core.on_connected()
    send(core, event="subscribed", feed="trade")
    ticker(core, "PF_XBTUSD", T0 + 5_000)
    (request,) = core.repairs_due()
    core.repair_failed(request)
    assert core.repairs_due() == []
    clock.now += 2_000
    (again,) = core.repairs_due()
    core.on_connected()  # the connection was lost meanwhile: a new epoch
    core.apply_repair(again, {"1m": [Candle("X", "1m", T0 - M, 1, 1, 1, 1, 1)]})
    assert candles(events) == []


def test_a_silent_symbol_goes_stale_is_suspended_and_recovers_with_a_repair() -> None:
    core, events, clock = make(stale_after_ms=1_000)
    go_live(core)
    assert events.count(FeedFresh("BTC/USD:USD")) == 1
    trade(core, "PF_XBTUSD", T0 + M + 1_000, 10.0)
    clock.now += 900
    ticker(core, "PF_ETHUSD", T0 + 2 * M + 100)  # closes BTC's 00:01
    clock.now += 200
    core.on_tick()
    assert FeedStale("BTC/USD:USD", 1_000_000) in events
    assert FeedStale("ETH/USD:USD", 1_000_000) not in events
    assert core.stale("BTC/USD:USD")
    assert not core.stale("ETH/USD:USD")
    assert core.builders["BTC/USD:USD"].suspended
    ticker(core, "PF_XBTUSD", T0 + 3 * M + 100)
    assert events[-2:] == [
        FeedFresh("BTC/USD:USD"),
        MarkPrice("BTC/USD:USD", Decimal("100.5"), T0 + 3 * M + 100),
    ]
    assert core.builders["BTC/USD:USD"].live_from == T0 + 4 * M
    (request,) = core.repairs_due()
    assert request.plan == {"1m": T0 + 2 * M}  # after the last candle emitted


def test_live_trades_become_candles_for_the_unified_symbol() -> None:
    core, events, _ = make()
    go_live(core)
    trade(core, "PF_XBTUSD", T0 + M + 1_000, 100.0, 2.0)
    trade(core, "PF_XBTUSD", T0 + M + 2_000, 101.0, 1.0)
    send(core, feed="heartbeat", time=T0 + 2 * M)
    (event,) = candles(events)
    assert event == CandleClosed(
        "BTC/USD:USD", "1m", Candle("BTC/USD:USD", "1m", T0 + M, 100.0, 101.0, 100.0, 101.0, 3.0)
    )


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"feed": "trade", "product_id": "PF_XBTUSD"}',
        '{"feed": "ticker", "product_id": "PF_XBTUSD", "time": "soon"}',
        '{"feed": "trade", "product_id": "PF_UNKNOWN", "time": 1, "price": 1, "qty": 1}',
        '{"event": "alert", "message": "Couldn\'t subscribe"}',
        '{"feed": "book", "product_id": "PF_XBTUSD"}',
    ],
)
def test_bad_or_unexpected_messages_are_logged_not_raised(raw: str) -> None:
    core, events, _ = make()
    go_live(core)
    events.clear()
    core.on_message(raw)
    assert candles(events) == []


def test_a_failing_consumer_does_not_stop_the_feed() -> None:
    calls: list[FeedEvent] = []

    def consumer(event: FeedEvent) -> None:
        calls.append(event)
        raise RuntimeError("consumer bug")

    core = FeedCore(SYMBOLS, ("1m",), consumer, lambda: 0, FeedConfig(close_grace_ms=0))
    go_live(core)
    ticker(core, "PF_XBTUSD", T0 + M + 5)
    assert isinstance(calls[-1], MarkPrice)


def test_throughput_benchmark_reports_messages_per_second() -> None:
    assert measure_feed_throughput(messages=3_000, symbols=3) > 1_000
