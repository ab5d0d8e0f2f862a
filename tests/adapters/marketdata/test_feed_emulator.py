"""The feed against the loopback emulator: candles built from its trade feed equal its charts
API; a dropped connection and a silenced symbol heal without a missing or repeated candle."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from adapters.marketdata import CandleClosed, FeedEvent, FeedFresh, FeedStale, MarketDataFeed
from adapters.sim.server import ServerHandle
from domain.models import Candle

from .conftest import MINUTE, SYMBOLS, FeedFactory, Recorder, admin, charts, sim_now

BTC, ETH = "BTC/USD:USD", "ETH/USD:USD"
STEP = {"1m": MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE}
HISTORY_START = 1_735_689_600_000 - 30 * MINUTE  # the emulator's 30 warm-up minutes


def closed(symbol: str, timeframe: str, open_time: int) -> Callable[[FeedEvent], bool]:
    return lambda e: (
        isinstance(e, CandleClosed)
        and e.symbol == symbol
        and e.timeframe == timeframe
        and e.candle.open_time == open_time
    )


def step(server: ServerHandle, recorder: Recorder, symbols: tuple[str, ...] = (BTC, ETH)) -> None:
    """Play one simulated minute and wait until its 1m candle closed for ``symbols``."""
    now = admin(server, "advance", {"seconds": 60})["clock_ms"]
    for symbol in symbols:
        recorder.wait_for(closed(symbol, "1m", now - MINUTE))


def row(candle: Candle) -> list[float]:
    c = candle
    return [c.open_time, c.open, c.high, c.low, c.close, c.volume]


def assert_matches_venue(
    server: ServerHandle, recorder: Recorder, symbol: str, timeframe: str, first: int, last: int
) -> list[CandleClosed]:
    """Every candle from ``first`` to ``last`` once, in order, equal to the venue's own."""
    got = recorder.candles(symbol, timeframe)
    assert [e.candle.open_time for e in got] == list(range(first, last + 1, STEP[timeframe]))
    venue = {int(r[0]): r for r in charts(server, symbol, timeframe, since=first)}
    for event in got:
        assert row(event.candle) == pytest.approx(venue[event.candle.open_time], rel=1e-9)
    return got


def start_live(feed: MarketDataFeed, recorder: Recorder, server: ServerHandle) -> int:
    """Wait for the warm-up, then play one minute so the feed goes live; returns the clock."""
    start = sim_now(server)
    for symbol in SYMBOLS:
        recorder.wait_for(closed(symbol, "1m", start - MINUTE))
    step(server, recorder)
    return start


def test_live_candles_equal_the_venue_charts(server: ServerHandle, make_feed: FeedFactory) -> None:
    feed, recorder = make_feed(("1m", "5m", "15m"))
    start = start_live(feed, recorder, server)
    for _ in range(31):
        step(server, recorder)
    end = sim_now(server)
    assert end == start + 32 * MINUTE

    for symbol in SYMBOLS:
        minutes = assert_matches_venue(server, recorder, symbol, "1m", HISTORY_START, end - MINUTE)
        live = [e.candle.open_time for e in minutes if e.source == "live"]
        assert live == list(range(start + MINUTE, end, MINUTE))  # all but the first minute
        # 5m buckets up to 00:25-00:30 are complete; the one holding 00:00 (repaired) is "rest"
        fives = assert_matches_venue(
            server, recorder, symbol, "5m", HISTORY_START, start + 25 * MINUTE
        )
        assert [e.source for e in fives if e.candle.open_time >= start] == ["rest"] + ["live"] * 5
        quarters = assert_matches_venue(
            server, recorder, symbol, "15m", HISTORY_START, start + 15 * MINUTE
        )
        assert quarters[-1].source == "live"
    assert feed.stats.connects == 1
    assert feed.stats.late_trades == 0
    assert not feed.stale(BTC)


def test_forced_disconnect_heals_without_missing_or_repeated_candles(
    server: ServerHandle, make_feed: FeedFactory
) -> None:
    feed, recorder = make_feed(("1m", "5m"))
    start = start_live(feed, recorder, server)
    step(server, recorder)
    assert admin(server, "ws/drop", {})["dropped"] == 1
    dropped_at = sim_now(server)
    for _ in range(3):  # minutes the feed misses while it is away (back-off >= 0.25 s)
        admin(server, "advance", {"seconds": 60})
    now = sim_now(server)
    for symbol in SYMBOLS:
        recorder.wait_for(closed(symbol, "1m", now - MINUTE))
    for _ in range(7):
        step(server, recorder)
    end = sim_now(server)

    assert feed.stats.connects == 2
    for symbol in SYMBOLS:
        minutes = assert_matches_venue(server, recorder, symbol, "1m", HISTORY_START, end - MINUTE)
        after_drop = [e for e in minutes if e.candle.open_time >= dropped_at]
        assert "rest" in {e.source for e in after_drop}  # the missed minutes came from REST
        assert minutes[-1].source == "live"
        assert_matches_venue(server, recorder, symbol, "5m", HISTORY_START, start + 5 * MINUTE)


def test_silenced_symbol_is_stale_within_threshold_then_fresh_and_repaired(
    server: ServerHandle, make_feed: FeedFactory
) -> None:
    threshold_ms, check_s = 600, 0.05
    feed, recorder = make_feed(("1m",), stale_after_ms=threshold_ms, check_interval_s=check_s)
    for symbol in SYMBOLS:
        recorder.wait_for(lambda e, s=symbol: isinstance(e, FeedFresh) and e.symbol == s)
    start_live(feed, recorder, server)

    mark = recorder.mark()
    silenced_at = time.monotonic()
    admin(server, "faults", {"kind": "stale_feed", "symbol": "PF_XBTUSD"})
    stale = recorder.wait_for(lambda e: isinstance(e, FeedStale), timeout=3, start=mark)
    elapsed = time.monotonic() - silenced_at
    assert stale == FeedStale(BTC, stale.since_ms)
    assert elapsed <= threshold_ms / 1000 + check_s + 0.25
    assert feed.stale(BTC)
    assert not feed.stale(ETH)

    for _ in range(2):  # BTC's trades of these minutes never reach the feed
        step(server, recorder, (ETH,))
    mark = recorder.mark()
    admin(server, "faults", None)
    recorder.wait_for(lambda e: e == FeedFresh(BTC), start=mark)
    assert not feed.stale(BTC)
    for _ in range(2):
        step(server, recorder)
    end = sim_now(server)

    recorder.drain()
    assert not [e for e in recorder.events if isinstance(e, FeedStale) and e.symbol == ETH]
    for symbol in SYMBOLS:
        minutes = assert_matches_venue(server, recorder, symbol, "1m", HISTORY_START, end - MINUTE)
        assert minutes[-1].source == "live"


def test_watchdog_reconnects_a_silent_connection(
    server: ServerHandle, make_feed: FeedFactory
) -> None:
    server.call(lambda s: setattr(s.hub, "heartbeat_interval", 3600))
    server.call(lambda s: setattr(s.hub, "ticker_interval", 3600))
    feed, _ = make_feed(("1m",), watchdog_ms=300, stale_after_ms=5_000)
    deadline = time.monotonic() + 5
    while feed.stats.connects < 2:
        assert time.monotonic() < deadline, "the watchdog did not reconnect"
        time.sleep(0.02)


def test_minutes_close_on_the_venue_heartbeat_after_the_grace(
    server: ServerHandle, make_feed: FeedFactory
) -> None:
    _, recorder = make_feed(("1m",), close_grace_ms=1_000)
    start = sim_now(server)
    for symbol in SYMBOLS:  # the minute before start is within the grace: not yet closed
        recorder.wait_for(closed(symbol, "1m", start - 2 * MINUTE))
    admin(server, "advance", {"seconds": 61})  # heartbeats now carry start + 61 s
    for _ in range(3):
        now = admin(server, "advance", {"seconds": 60})["clock_ms"]
        for symbol in SYMBOLS:
            recorder.wait_for(closed(symbol, "1m", now - 1_000 - MINUTE))
    for symbol in SYMBOLS:
        minutes = assert_matches_venue(
            server, recorder, symbol, "1m", HISTORY_START, start + 3 * MINUTE
        )
        assert minutes[-1].source == "live"
