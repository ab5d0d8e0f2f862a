"""ccxt's own sync ``krakenfutures`` client against the emulator: every call Bastion uses."""

from __future__ import annotations

import itertools

import ccxt
import pytest

from adapters.sim.server import ServerHandle

from .conftest import BTC, ETH, admin, client


def test_markets_ticker_ohlcv_balance(exchange: ccxt.krakenfutures) -> None:
    market = exchange.market(BTC)
    assert market["id"] == "PF_XBTUSD"
    assert market["linear"] and market["swap"]
    assert market["precision"] == {**market["precision"], "amount": 0.0001, "price": 1.0}

    ticker = exchange.fetch_ticker(BTC)
    assert ticker["symbol"] == BTC
    assert ticker["bid"] < ticker["last"] < ticker["ask"]

    candles = exchange.fetch_ohlcv(BTC, "1m", limit=10)
    assert len(candles) == 10
    assert all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
    assert candles[-1][4] == ticker["last"]
    five = exchange.fetch_ohlcv(BTC, "5m", since=candles[0][0] - 600_000)
    assert five and all(c[0] % 300_000 == 0 for c in five)

    balance = exchange.fetch_balance()
    assert balance["USD"]["total"] == 100_000
    assert balance["USD"]["free"] == 100_000


def test_orders_positions_trades(exchange: ccxt.krakenfutures, server: ServerHandle) -> None:
    admin(server, "price", {"symbol": "PF_XBTUSD", "price": 50_000})
    entry = exchange.create_order(
        BTC, "market", "buy", 0.02, params={"clientOrderId": "bst-1-en-1"}
    )
    assert entry["status"] == "closed"
    assert entry["filled"] == 0.02

    positions = exchange.fetch_positions([BTC])
    assert len(positions) == 1
    assert positions[0]["side"] == "long"
    assert positions[0]["contracts"] == 0.02

    stop = exchange.create_order(
        BTC, "market", "sell", 0.02, params={"stopLossPrice": 45_000, "clientOrderId": "bst-1-sl-1"}
    )
    assert stop["status"] == "open"
    assert stop["reduceOnly"] is True
    assert stop["triggerPrice"] == 45_000
    stop_market = exchange.create_order(
        BTC, "market", "sell", 0.01, params={"triggerPrice": 44_000, "reduceOnly": True}
    )
    take_profit = exchange.create_order(
        BTC, "limit", "sell", 0.02, 56_000, params={"takeProfitPrice": 55_000}
    )
    limit = exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)
    assert limit["status"] == "open"

    open_orders = {o["id"]: o for o in exchange.fetch_open_orders()}
    assert set(open_orders) == {stop["id"], stop_market["id"], take_profit["id"], limit["id"]}
    assert open_orders[stop["id"]]["type"] == "stop"
    assert open_orders[stop["id"]]["clientOrderId"] == "bst-1-sl-1"
    assert open_orders[take_profit["id"]]["type"] == "take_profit"
    assert open_orders[take_profit["id"]]["triggerPrice"] == 55_000
    assert open_orders[limit["id"]]["remaining"] == 0.5

    fetched = exchange.fetch_order(stop["id"])
    assert fetched["status"] == "open"
    assert fetched["triggerPrice"] == 45_000

    trades = exchange.fetch_my_trades(BTC)
    assert [t["order"] for t in trades] == [entry["id"]]
    assert trades[0]["amount"] == 0.02
    assert trades[0]["takerOrMaker"] == "taker"

    canceled = exchange.cancel_order(limit["id"])
    assert canceled["status"] == "canceled"
    assert limit["id"] not in {o["id"] for o in exchange.fetch_open_orders()}

    # The stop fires when the price falls through it; the position is closed.
    admin(server, "price", {"symbol": "PF_XBTUSD", "price": 44_500})
    positions = exchange.fetch_positions([BTC])
    assert positions == []
    remaining = {o["id"] for o in exchange.fetch_open_orders()}
    assert stop["id"] not in remaining
    assert take_profit["id"] not in remaining  # reduce-only orders follow the flat position


def test_edit_order_and_leverage(exchange: ccxt.krakenfutures) -> None:
    order = exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)
    edited = exchange.edit_order(order["id"], ETH, "limit", "buy", 0.7, 1_100)
    assert edited["status"] == "open"
    row = next(o for o in exchange.fetch_open_orders() if o["id"] == order["id"])
    assert row["remaining"] == 0.7

    exchange.set_leverage(5, BTC)
    assert exchange.fetch_leverage(BTC)["longLeverage"] == 5
    with pytest.raises(ccxt.BadRequest):
        exchange.set_leverage(500, BTC)


def test_insufficient_margin(exchange: ccxt.krakenfutures) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order(BTC, "market", "buy", 20)


def test_unknown_order(exchange: ccxt.krakenfutures) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ccxt.OrderNotFound):
        exchange.cancel_order(unknown)
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order(unknown)
    with pytest.raises(ccxt.OrderNotFound):
        exchange.edit_order(unknown, BTC, "limit", "buy", 1, 100)


def test_bad_signature_and_unknown_key(server: ServerHandle) -> None:
    wrong_secret = client(server, secret="d3JvbmcgYnV0IHZhbGlkIGJhc2U2NA==")
    wrong_secret.load_markets()  # public: no signature needed
    with pytest.raises(ccxt.AuthenticationError):
        wrong_secret.fetch_balance()
    with pytest.raises(ccxt.AuthenticationError):
        client(server, api_key="nobody").fetch_positions()


def test_reduce_only_oversize_is_reduced_and_wrong_side_rejected(
    exchange: ccxt.krakenfutures,
) -> None:
    """The venue reduces an over-size reduce-only order to the position (``reducedQuantity``),
    and rejects one that cannot reduce with ``wouldNotReducePosition`` (ccxt: ExchangeError)."""
    exchange.create_order(BTC, "market", "buy", 0.01)
    closing = exchange.create_order(BTC, "market", "sell", 0.05, params={"reduceOnly": True})
    assert closing["filled"] == 0.01
    assert closing["status"] == "closed"
    assert closing["info"]["orderEvents"][0]["takerReducedQuantity"] == 0.04
    assert exchange.fetch_positions() == []
    with pytest.raises(ccxt.ExchangeError) as info:
        exchange.create_order(BTC, "market", "sell", 0.01, params={"reduceOnly": True})
    assert "wouldNotReducePosition" in str(info.value)


def test_stop_that_would_trigger_immediately_is_rejected(exchange: ccxt.krakenfutures) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    last = exchange.fetch_ticker(BTC)["last"]
    with pytest.raises(ccxt.InvalidOrder):
        exchange.create_order(BTC, "market", "sell", 0.01, params={"stopLossPrice": last + 100})


def test_accounts_and_funding_via_admin(server: ServerHandle) -> None:
    secret = "c2Vjb25kIGFjY291bnQgc2VjcmV0IGZvciB0ZXN0cw=="
    admin(server, "accounts", {"api_key": "second", "api_secret": secret, "balance": 500})
    second = client(server, "second", secret)
    assert second.fetch_balance()["USD"]["total"] == 500
    admin(server, "fund", {"api_key": "second", "amount": 250})
    assert second.fetch_balance()["USD"]["total"] == 750
    with pytest.raises(ccxt.InsufficientFunds):
        second.create_order(BTC, "market", "buy", 1)
