"""Fixtures: the loopback emulator at speed 0 (time moves only through ``/_sim/advance``), a
running feed against it, and an event recorder that waits on events instead of sleeping."""

from __future__ import annotations

import json
import queue
import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest

from adapters.marketdata import (
    CandleClosed,
    ChartsWarmup,
    FeedConfig,
    FeedEvent,
    MarketDataFeed,
)
from adapters.sim.server import ServerHandle, ccxt_urls, start_server

SYMBOLS = {"BTC/USD:USD": "PF_XBTUSD", "ETH/USD:USD": "PF_ETHUSD"}
MINUTE = 60_000


class Recorder:
    """Collects feed events (thread-safe) and waits for them with a timeout."""

    def __init__(self) -> None:
        self.events: list[FeedEvent] = []
        self._queue: queue.Queue[FeedEvent] = queue.Queue()

    def __call__(self, event: FeedEvent) -> None:
        self._queue.put(event)

    def wait_for(
        self, predicate: Callable[[FeedEvent], bool], timeout: float = 5.0, start: int = 0
    ) -> FeedEvent:
        """The first event from position ``start`` on that matches (waits up to ``timeout``)."""
        for event in self.events[start:]:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a feed event")
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.events.append(event)
            if predicate(event):
                return event

    def mark(self) -> int:
        """Position after every event received so far (for ``wait_for(start=...)``)."""
        self.drain()
        return len(self.events)

    def candles(self, symbol: str, timeframe: str) -> list[CandleClosed]:
        self.drain()
        return [
            e
            for e in self.events
            if isinstance(e, CandleClosed) and e.symbol == symbol and e.timeframe == timeframe
        ]

    def drain(self) -> None:
        while True:
            try:
                self.events.append(self._queue.get_nowait())
            except queue.Empty:
                return


def admin(handle: ServerHandle, path: str, body: dict[str, Any] | None = None) -> Any:
    method = "DELETE" if body is None else "POST"
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(f"{handle.url}/_sim/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def sim_now(handle: ServerHandle) -> int:
    return handle.call(lambda s: s.venue.now_ms)


def charts(handle: ServerHandle, symbol: str, timeframe: str, since: int) -> list[list[float]]:
    """The venue's own candles through ccxt's ``fetch_ohlcv`` (charts API)."""
    exchange = ccxt.krakenfutures({"enableRateLimit": False, "timeout": 5000})
    urls = ccxt_urls(handle.url)
    urls.pop("ws")
    exchange.urls["api"].update(urls)
    exchange.load_markets()
    return exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=2000)


@pytest.fixture
def server() -> Iterator[ServerHandle]:
    handle = start_server(port=0, seed=7, speed=0, warmup_minutes=30, ticker_interval=0.1)
    handle.call(lambda s: setattr(s.hub, "heartbeat_interval", 0.2))
    yield handle
    handle.stop()


FeedFactory = Callable[..., tuple[MarketDataFeed, Recorder]]


@pytest.fixture
def make_feed(server: ServerHandle) -> Iterator[FeedFactory]:
    feeds: list[MarketDataFeed] = []

    def make(
        timeframes: tuple[str, ...] = ("1m",), **config: Any
    ) -> tuple[MarketDataFeed, Recorder]:
        options: dict[str, Any] = {
            "close_grace_ms": 0,
            "stale_after_ms": 1_000,
            "watchdog_ms": 5_000,
            "warmup_bars": 30,
            "backoff_initial_s": 0.5,
            "backoff_max_s": 1.0,
            "check_interval_s": 0.05,
            "repair_retry_s": 0.1,
        }
        options.update(config)
        recorder = Recorder()
        feed = MarketDataFeed(
            server.ws_url,
            SYMBOLS,
            timeframes=timeframes,
            warmup=ChartsWarmup(server.url, SYMBOLS),
            on_event=recorder,
            config=FeedConfig(**options),
            rng=random.Random(3),
        )
        feed.start()
        feeds.append(feed)
        return feed, recorder

    yield make
    for feed in feeds:
        feed.stop()
