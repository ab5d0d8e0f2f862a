"""The emulator's clock as clients see it: messages dated with the venue's time, heartbeats on
that clock, every minute closed by a message's time printed before it, and requests answered
with the venue as of their arrival."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from adapters.sim.server import ServerHandle, app, start_server

from .conftest import admin
from .test_ws import Message, all_of, is_feed, until

MINUTE = 60_000
SPEED = 120.0


def clock(server: ServerHandle) -> int:
    return server.call(lambda s: s.venue.now_ms)


def test_tickers_and_books_carry_the_venue_clock(server: ServerHandle) -> None:
    """Between candles the engine's time stays at the next candle's open; what the venue sends
    is dated with its own clock, as the venue's messages are."""
    admin(server, "advance", {"seconds": 30})
    now = clock(server)
    assert server.call(lambda s: s.venue.engine.now) < now

    async def scenario() -> None:
        async with connect(server.ws_url) as ws:
            for feed in ("ticker", "book"):
                message = {"event": "subscribe", "feed": feed, "product_ids": ["PF_XBTUSD"]}
                await ws.send(json.dumps(message))
            ticker, book = await all_of(
                ws,
                lambda m: is_feed(m) and m["feed"] == "ticker",
                lambda m: is_feed(m) and m["feed"] == "book_snapshot",
            )
            assert ticker["time"] == book["timestamp"] == now
            await asyncio.to_thread(
                admin, server, "price", {"symbol": "PF_XBTUSD", "price": 61_000}
            )
            moved = await until(ws, lambda m: is_feed(m) and m.get("last") == 61_000)
            assert moved["time"] == now

    asyncio.run(scenario())


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[ServerHandle]:
    """An emulator at 120x: one venue minute every half second."""
    handle = start_server(port=0, state_dir=tmp_path / "state", seed=3, speed=SPEED)
    yield handle
    handle.stop()


def test_heartbeats_follow_the_venue_clock_and_come_after_the_minutes_they_close(
    fast: ServerHandle,
) -> None:
    """A heartbeat comes every ``heartbeat_interval`` seconds of the venue's clock (5 s: 24 a
    wall second at 120x), and the prints of every minute that ended by its time came first: a
    client closing minutes on the venue's time never closes one before its trades."""
    interval_ms = int(fast.call(lambda s: s.hub.heartbeat_interval) * 1000)
    beats: list[int] = []
    printed: dict[str, int] = {}  # product -> newest print time
    late: list[tuple[int, str, int]] = []

    async def scenario() -> None:
        async with connect(fast.ws_url) as ws:
            await ws.send(json.dumps({"event": "subscribe", "feed": "heartbeat"}))
            products = ["PF_XBTUSD", "PF_ETHUSD"]
            await ws.send(
                json.dumps({"event": "subscribe", "feed": "trade", "product_ids": products})
            )
            started = time.monotonic()
            async with asyncio.timeout(10):
                while time.monotonic() - started < 1.6:
                    message: Message = json.loads(await ws.recv())
                    if not is_feed(message):
                        continue
                    if message["feed"] == "trade":
                        product = message["product_id"]
                        printed[product] = max(printed.get(product, 0), message["time"])
                    elif message["feed"] == "heartbeat":
                        t = message["time"]
                        beats.append(t)
                        ended = t - t % MINUTE  # the minute [ended - 60 s, ended) is over
                        late.extend(
                            (t, p, newest)
                            for p, newest in printed.items()
                            if newest < ended - MINUTE
                        )

    asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert len(beats) >= 10, beats  # every 5 wall seconds before: none or one in 1.6 s
    assert min(gaps) >= interval_ms * 0.9, gaps
    assert beats[-1] - beats[0] >= 2 * MINUTE  # minutes passed: the check below saw closes
    assert printed and not late, late


def test_a_request_sees_the_venue_as_of_its_arrival(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the background clock step and the feed messages held off, a request still finds the
    minutes that ended before it played: the venue does not wait for its own timer."""
    monkeypatch.setattr(app, "CLOCK_STEP_S", 3600.0)
    handle = start_server(
        port=0, state_dir=tmp_path / "state", seed=3, speed=SPEED, ticker_interval=3600
    )
    try:
        handle.call(lambda s: setattr(s.hub, "heartbeat_interval", 3600 * SPEED))
        played = handle.call(lambda s: s.venue.driver.played)
        time.sleep(1.1)  # 132 venue seconds: two minutes end
        asked = time.monotonic()
        with urllib.request.urlopen(f"{handle.url}/derivatives/api/v3/tickers", timeout=5) as r:
            served = datetime.fromisoformat(json.loads(r.read())["serverTime"])
        answered = time.monotonic()
        assert handle.call(lambda s: s.venue.driver.played) >= played + 2
        now = clock(handle)  # where that request left the clock
        assert abs(int(served.timestamp() * 1000) - now) <= (answered - asked) * SPEED * 1000 + 1
    finally:
        handle.stop()
