"""Fixtures: an emulator on a background thread (speed 0: time moves only through admin calls)
and ccxt's own sync ``krakenfutures`` client pointed at it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest

from adapters.sim.server import (
    PAPER_API_KEY,
    PAPER_API_SECRET,
    ServerHandle,
    ccxt_urls,
    start_server,
)

BTC = "BTC/USD:USD"
ETH = "ETH/USD:USD"
SEED = 7


def launch(state_dir: Path, **options: Any) -> ServerHandle:
    options.setdefault("warmup_minutes", 30)
    return start_server(port=0, state_dir=state_dir, seed=SEED, speed=0, **options)


def client(
    handle: ServerHandle, api_key: str = PAPER_API_KEY, secret: str = PAPER_API_SECRET
) -> ccxt.krakenfutures:
    exchange = ccxt.krakenfutures(
        {"apiKey": api_key, "secret": secret, "enableRateLimit": False, "timeout": 5000}
    )
    urls = ccxt_urls(handle.url)
    urls.pop("ws")
    exchange.urls["api"].update(urls)
    return exchange


def admin(
    handle: ServerHandle, path: str, body: dict[str, Any] | None = None, method: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{handle.url}/_sim/{path}", data=data, method=method or ("POST" if data else "GET")
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = launch(tmp_path / "state")
    yield handle
    handle.stop()


@pytest.fixture
def exchange(server: ServerHandle) -> ccxt.krakenfutures:
    ex = client(server)
    ex.load_markets()
    return ex
