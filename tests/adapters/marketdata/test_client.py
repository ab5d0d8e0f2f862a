"""MarketDataFeed pieces that need no venue: back-off bounds; the asyncio entry point."""

from __future__ import annotations

import asyncio
import random

from adapters.marketdata import FeedConfig, FeedEvent, FeedFresh, MarketDataFeed
from adapters.sim.server import ServerHandle

from .conftest import SYMBOLS


def test_backoff_grows_exponentially_with_jitter_and_is_bounded() -> None:
    config = FeedConfig(backoff_initial_s=0.5, backoff_max_s=8.0)
    feed = MarketDataFeed(
        "ws://127.0.0.1:9/ws/v1",
        SYMBOLS,
        timeframes=("1m",),
        warmup=lambda symbol, timeframe, since, until: [],
        on_event=lambda event: None,
        config=config,
        rng=random.Random(1),
    )
    for attempt in range(60):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= feed._backoff(attempt) <= ceiling


def test_run_in_an_asyncio_program_and_stop(server: ServerHandle) -> None:
    async def scenario() -> None:
        fresh: asyncio.Queue[FeedEvent] = asyncio.Queue()
        feed = MarketDataFeed(
            server.ws_url,
            SYMBOLS,
            timeframes=("1m",),
            warmup=lambda symbol, timeframe, since, until: [],
            on_event=fresh.put_nowait,  # same loop: no thread hop needed
        )
        task = asyncio.create_task(feed.run())
        async with asyncio.timeout(5):
            while not isinstance(await fresh.get(), FeedFresh):
                pass
        feed.stop()
        async with asyncio.timeout(5):
            await task

    asyncio.run(scenario())
