"""A plain ``websockets`` client against the emulator's WebSocket v1 endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, ServerHandle

from .conftest import BTC, admin, client

PRODUCTS = ["PF_XBTUSD", "PF_ETHUSD"]
Message = dict[str, Any]


async def until(
    ws: ClientConnection, predicate: Callable[[Message], bool], timeout: float = 5
) -> Message:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message


async def all_of(
    ws: ClientConnection, *predicates: Callable[[Message], bool], timeout: float = 5
) -> list[Message]:
    """The first message matching each predicate, in any arrival order."""
    found: list[Message | None] = [None] * len(predicates)
    async with asyncio.timeout(timeout):
        while any(m is None for m in found):
            message = json.loads(await ws.recv())
            for i, predicate in enumerate(predicates):
                if found[i] is None and predicate(message):
                    found[i] = message
    return [m for m in found if m is not None]


async def subscribe_public(ws: ClientConnection) -> None:
    for feed in ("ticker", "trade"):
        await ws.send(json.dumps({"event": "subscribe", "feed": feed, "product_ids": PRODUCTS}))
    seen: set[tuple[str, str]] = set()
    async with asyncio.timeout(5):
        while len(seen) < 4:
            message = json.loads(await ws.recv())
            if "event" not in message and message.get("feed") in ("ticker", "trade_snapshot"):
                seen.add((message["feed"], message["product_id"]))


async def drain(ws: ClientConnection) -> None:
    """Read until the connection closes (bounded)."""
    async with asyncio.timeout(5):
        while True:
            await ws.recv()


def is_feed(message: Message) -> bool:
    """A feed message (acks carry ``event`` and a ``feed`` too)."""
    return "event" not in message and "feed" in message


def signed(challenge: str) -> str:
    digest = hashlib.sha256(challenge.encode()).digest()
    key = base64.b64decode(PAPER_API_SECRET)
    return base64.b64encode(hmac.new(key, digest, hashlib.sha512).digest()).decode()


def test_public_feeds_reconnect_and_private_fills(server: ServerHandle) -> None:
    asyncio.run(_scenario(server))


async def _scenario(server: ServerHandle) -> None:
    async with connect(server.ws_url) as ws:
        assert json.loads(await ws.recv()) == {"event": "info", "version": 1}
        await subscribe_public(ws)
        for symbol, price in (("PF_XBTUSD", 61_000), ("PF_ETHUSD", 2_500)):
            await asyncio.to_thread(admin, server, "price", {"symbol": symbol, "price": price})
            tick, trade = await all_of(
                ws,
                lambda m, s=symbol, p=price: (
                    is_feed(m) and m["feed"] == "ticker" and m["product_id"] == s and m["last"] == p
                ),
                lambda m, s=symbol: is_feed(m) and m["feed"] == "trade" and m["product_id"] == s,
            )
            assert tick["markPrice"] == price
            assert trade["price"] == price

        await asyncio.to_thread(admin, server, "ws/drop", {})
        with pytest.raises(ConnectionClosed):
            await drain(ws)

    # Reconnect, resubscribe, and authenticate on the same socket.
    async with connect(server.ws_url) as ws:
        await until(ws, lambda m: m.get("event") == "info")
        await subscribe_public(ws)
        await ws.send(json.dumps({"event": "challenge", "api_key": PAPER_API_KEY}))
        challenge = (await until(ws, lambda m: m.get("event") == "challenge"))["message"]

        bad = {
            "event": "subscribe",
            "feed": "fills",
            "api_key": PAPER_API_KEY,
            "original_challenge": challenge,
            "signed_challenge": signed("other"),
        }
        await ws.send(json.dumps(bad))
        alert = await until(ws, lambda m: m.get("event") == "alert")
        assert "authenticated" in alert["message"]

        for feed in ("fills", "open_orders", "open_positions"):
            await ws.send(json.dumps({**bad, "feed": feed, "signed_challenge": signed(challenge)}))
        fills_snap, orders_snap, positions_snap = await all_of(
            ws,
            lambda m: is_feed(m) and m["feed"] == "fills_snapshot",
            lambda m: is_feed(m) and m["feed"] == "open_orders_snapshot",
            lambda m: is_feed(m) and m["feed"] == "open_positions",
        )
        assert fills_snap["fills"] == orders_snap["orders"] == positions_snap["positions"] == []

        exchange = client(server)
        order = await asyncio.to_thread(exchange.create_order, BTC, "market", "buy", 0.01)
        fills, done, positions = await all_of(
            ws,
            lambda m: is_feed(m) and m["feed"] == "fills",
            lambda m: is_feed(m) and m["feed"] == "open_orders" and m.get("reason") == "full_fill",
            lambda m: is_feed(m) and m["feed"] == "open_positions" and m["positions"],
        )
        assert [f["order_id"] for f in fills["fills"]] == [order["id"]]
        assert fills["fills"][0]["buy"] is True
        assert fills["fills"][0]["qty"] == 0.01
        assert done["order"]["order_id"] == order["id"]
        assert positions["positions"][0]["balance"] == 0.01

        stop = await asyncio.to_thread(
            exchange.create_order, BTC, "market", "sell", 0.01, None, {"stopLossPrice": 50_000}
        )
        placed = await until(
            ws, lambda m: is_feed(m) and m["feed"] == "open_orders" and "order" in m
        )
        assert placed["order"]["order_id"] == stop["id"]
        assert placed["order"]["type"] == "stop"
        await asyncio.to_thread(admin, server, "venue_cancel", {"order_id": stop["id"]})
        cancel = await until(
            ws, lambda m: is_feed(m) and m["feed"] == "open_orders" and m.get("is_cancel")
        )
        assert cancel == {
            "feed": "open_orders",
            "order_id": stop["id"],
            "is_cancel": True,
            "reason": "cancelled_by_admin",
        }


def test_stale_feed_silences_one_symbol(server: ServerHandle) -> None:
    async def scenario() -> None:
        async with connect(server.ws_url) as ws:
            await subscribe_public(ws)
            await asyncio.to_thread(
                admin, server, "faults", {"kind": "stale_feed", "symbol": "PF_XBTUSD"}
            )
            await asyncio.to_thread(
                admin, server, "price", {"symbol": "PF_XBTUSD", "price": 70_000}
            )
            await asyncio.to_thread(admin, server, "price", {"symbol": "PF_ETHUSD", "price": 2_000})
            eth = await until(
                ws,
                lambda m: (
                    is_feed(m)
                    and m["feed"] == "ticker"
                    and m["product_id"] == "PF_ETHUSD"
                    and m["last"] == 2_000
                ),
            )
            assert eth["last"] == 2_000
            with pytest.raises(TimeoutError):
                await until(ws, lambda m: m.get("product_id") == "PF_XBTUSD", timeout=1.2)
            await asyncio.to_thread(admin, server, "faults", {}, "DELETE")
            btc = await until(
                ws,
                lambda m: is_feed(m) and m["feed"] == "ticker" and m["product_id"] == "PF_XBTUSD",
            )
            assert btc["last"] == 70_000

    asyncio.run(scenario())
