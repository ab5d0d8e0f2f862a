"""Injected faults as ccxt sees them."""

from __future__ import annotations

import time

import ccxt
import pytest

from adapters.sim.server import ServerHandle

from .conftest import BTC, ETH, admin


def test_timeout_after_accept_leaves_the_order(
    exchange: ccxt.krakenfutures, server: ServerHandle
) -> None:
    admin(server, "faults", {"kind": "timeout_after_accept", "endpoint": "sendorder"})
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order(ETH, "limit", "buy", 0.5, 1_000, params={"clientOrderId": "amb-1"})
    rows = exchange.fetch_open_orders()
    assert [o["clientOrderId"] for o in rows] == ["amb-1"]
    # The rule was used up: the next order goes through.
    assert exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)["status"] == "open"


def test_hanging_timeout_after_accept_is_a_request_timeout(
    exchange: ccxt.krakenfutures, server: ServerHandle
) -> None:
    admin(server, "faults", {"kind": "timeout_after_accept", "endpoint": "sendorder", "ms": 1500})
    exchange.timeout = 300
    with pytest.raises(ccxt.RequestTimeout):
        exchange.create_order(ETH, "limit", "buy", 0.5, 1_000, params={"clientOrderId": "amb-2"})
    exchange.timeout = 5000
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders()] == ["amb-2"]


def test_timeout_before_accept_leaves_nothing(
    exchange: ccxt.krakenfutures, server: ServerHandle
) -> None:
    admin(server, "faults", {"kind": "timeout_before_accept", "endpoint": "sendorder"})
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)
    assert exchange.fetch_open_orders() == []


def test_http_5xx(exchange: ccxt.krakenfutures, server: ServerHandle) -> None:
    admin(server, "faults", {"kind": "http_5xx", "endpoint": "openpositions", "status": 503})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.fetch_positions()
    assert exchange.fetch_positions() == []


def test_rate_limit_429_is_ddos_protection(
    exchange: ccxt.krakenfutures, server: ServerHandle
) -> None:
    """HTTP 429 is checked before the body: ccxt raises DDoSProtection. The venue's
    ``apiLimitExceeded`` envelope with HTTP 200 maps to RateLimitExceeded (both NetworkError)."""
    admin(server, "faults", {"kind": "rate_limit", "endpoint": "sendorder", "times": 2})
    with pytest.raises(ccxt.DDoSProtection):
        exchange.create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(ccxt.DDoSProtection):
        exchange.create_order(BTC, "market", "buy", 0.01)
    admin(server, "faults", {"kind": "rate_limit", "endpoint": "*", "status": 200})
    with pytest.raises(ccxt.RateLimitExceeded):
        exchange.fetch_balance()
    assert exchange.fetch_positions() == []  # nothing was applied


def test_stop_reject_fault_hits_only_stops(
    exchange: ccxt.krakenfutures, server: ServerHandle
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.02)
    admin(server, "faults", {"kind": "reject_stop"})
    assert exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)["status"] == "open"
    with pytest.raises(ccxt.InvalidOrder):
        exchange.create_order(BTC, "market", "sell", 0.02, params={"stopLossPrice": 10_000})
    stop = exchange.create_order(BTC, "market", "sell", 0.02, params={"stopLossPrice": 10_000})
    assert stop["status"] == "open"


def test_venue_cancel_of_a_resting_stop(exchange: ccxt.krakenfutures, server: ServerHandle) -> None:
    exchange.create_order(BTC, "market", "buy", 0.02)
    stop = exchange.create_order(BTC, "market", "sell", 0.02, params={"stopLossPrice": 10_000})
    limit = exchange.create_order(ETH, "limit", "buy", 0.5, 1_000)
    result = admin(server, "venue_cancel", {"api_key": exchange.apiKey})
    assert result["cancelled"] == [stop["id"]]
    assert [o["id"] for o in exchange.fetch_open_orders()] == [limit["id"]]
    assert exchange.fetch_order(stop["id"])["status"] == "canceled"
    assert len(exchange.fetch_positions()) == 1


def test_latency_and_clearing(exchange: ccxt.krakenfutures, server: ServerHandle) -> None:
    rule = admin(
        server,
        "faults",
        {"kind": "latency", "endpoint": "tickers/PF_XBTUSD", "ms": 300, "times": -1},
    )
    started = time.monotonic()
    exchange.fetch_ticker(BTC)
    assert time.monotonic() - started >= 0.3
    assert len(admin(server, "faults")["rules"]) == 1
    admin(server, "faults", {"id": rule["rule"]["id"]}, method="DELETE")
    assert admin(server, "faults")["rules"] == []
