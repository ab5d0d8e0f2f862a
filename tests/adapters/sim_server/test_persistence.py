"""The emulator's state outlives a restart."""

from __future__ import annotations

from pathlib import Path

from .conftest import BTC, ETH, admin, client, launch


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = launch(state)
    try:
        ex = client(first)
        ex.load_markets()
        admin(first, "price", {"symbol": "PF_XBTUSD", "price": 60_000})
        ex.create_order(BTC, "market", "buy", 0.03, params={"clientOrderId": "bst-9-en-1"})
        stop = ex.create_order(BTC, "market", "sell", 0.03, params={"stopLossPrice": 55_000})
        limit = ex.create_order(ETH, "limit", "buy", 1, 1_000)
        ex.set_leverage(4, BTC)
        admin(first, "advance", {"minutes": 3})
        before = {
            "positions": [
                (p["symbol"], p["contracts"], p["entryPrice"]) for p in ex.fetch_positions()
            ],
            "orders": sorted(o["id"] for o in ex.fetch_open_orders()),
            "fills": [t["id"] for t in ex.fetch_my_trades()],
            "balance": ex.fetch_balance()["USD"]["total"],
            "clock": admin(first, "state")["clock_ms"],
            "candles": ex.fetch_ohlcv(BTC, "1m", limit=5),
        }
    finally:
        first.stop()

    second = launch(state)
    try:
        ex = client(second)
        ex.load_markets()
        assert [
            (p["symbol"], p["contracts"], p["entryPrice"]) for p in ex.fetch_positions()
        ] == before["positions"]
        assert (
            sorted(o["id"] for o in ex.fetch_open_orders())
            == before["orders"]
            == sorted([stop["id"], limit["id"]])
        )
        assert [t["id"] for t in ex.fetch_my_trades()] == before["fills"]
        assert ex.fetch_balance()["USD"]["total"] == before["balance"]
        assert ex.fetch_leverage(BTC)["longLeverage"] == 4
        assert admin(second, "state")["clock_ms"] == before["clock"]
        assert ex.fetch_ohlcv(BTC, "1m", limit=5) == before["candles"]
        # Ids keep counting from where they were: a new order gets a fresh id.
        new = ex.create_order(ETH, "limit", "buy", 1, 900)
        assert new["id"] not in before["orders"]
        # The market continues deterministically from the saved minute.
        played = admin(second, "advance", {"minutes": 2})["candles_played"]
        assert played == 2
    finally:
        second.stop()


def test_clean_restart_shows_the_identical_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = launch(state)
    try:
        ex = client(first)
        ex.load_markets()
        for i in range(20):
            order = ex.create_order(ETH, "limit", "buy", 1, 1_000 + i)
            if i % 3 == 0:
                ex.cancel_order(order["id"], ETH)
        ex.create_order(BTC, "market", "buy", 0.02)
        admin(first, "advance", {"minutes": 2})
        ex.create_order(BTC, "market", "sell", 0.01)
        before = admin(first, "state")
    finally:
        first.stop()

    second = launch(state)
    try:
        assert admin(second, "state") == before
    finally:
        second.stop()
