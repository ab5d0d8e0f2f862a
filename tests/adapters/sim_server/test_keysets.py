"""The emulator's payloads carry every field the venue's recorded payloads carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ccxt
import pytest

from adapters.sim.server import ServerHandle

from .conftest import BTC, admin

SAMPLES = Path("/work/shared/venue-samples/krakenfutures")
RESPONSES = SAMPLES / "response" / "krakenfutures.json"
MARKETS = SAMPLES / "markets" / "krakenfutures.json"

pytestmark = pytest.mark.skipif(not RESPONSES.exists(), reason="venue samples not available")


def missing_keys(sample: Any, ours: Any, path: str = "$") -> list[str]:
    """Keys present in ``sample`` but absent from ``ours``, recursively; every element of a list
    in ``ours`` must carry the union of the keys of the sample's elements."""
    if isinstance(sample, dict):
        if not isinstance(ours, dict):
            return [f"{path} is not an object"]
        out = [f"{path}.{k}" for k in sample if k not in ours]
        for key in sample:
            if key in ours:
                out += missing_keys(sample[key], ours[key], f"{path}.{key}")
        return out
    if isinstance(sample, list) and sample and isinstance(sample[0], dict):
        if not isinstance(ours, list) or not ours:
            return [f"{path} is empty or not a list"]
        union: dict[str, Any] = {}
        for item in sample:
            union.update(item)
        return [m for i, item in enumerate(ours) for m in missing_keys(union, item, f"{path}[{i}]")]
    return []


def sample(method: str) -> dict[str, Any]:
    cases = json.loads(RESPONSES.read_text())["methods"][method]
    return cases[0]["httpResponse"]


def test_missing_keys_finds_gaps() -> None:
    assert missing_keys({"a": 1, "b": [{"c": 1}, {"d": 2}]}, {"a": 1, "b": [{"c": 1}]}) == [
        "$.b[0].d"
    ]


def test_key_sets_match_venue_samples(exchange: ccxt.krakenfutures, server: ServerHandle) -> None:
    admin(server, "price", {"symbol": "PF_LTCUSD", "price": 70})
    exchange.create_order("LTC/USD:USD", "market", "buy", 0.1)
    exchange.create_order("LTC/USD:USD", "limit", "buy", 0.1, 50)

    ours = {
        "fetchMyTrades": exchange.privateGetFills(),
        "fetchPositions": exchange.privateGetOpenpositions(),
        "fetchOpenOrders": exchange.privateGetOpenorders(),
        "fetchFundingRates": exchange.publicGetTickers(),
    }
    problems = {m: missing_keys(sample(m), payload) for m, payload in ours.items()}
    assert problems == {m: [] for m in ours}

    venue_info = json.loads(MARKETS.read_text())[BTC]["info"]
    instruments = exchange.publicGetInstruments()["instruments"]
    ours_btc = next(i for i in instruments if i["symbol"] == "PF_XBTUSD")
    assert missing_keys(venue_info, ours_btc) == []
