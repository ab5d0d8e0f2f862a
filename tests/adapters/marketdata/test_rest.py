"""ChartsWarmup: history from the emulator's charts API, paged."""

from __future__ import annotations

import pytest

from adapters.marketdata import ChartsWarmup, rest
from adapters.sim.server import ServerHandle

from .conftest import MINUTE, SYMBOLS, charts

HISTORY_START = 1_735_689_600_000 - 30 * MINUTE


def test_pages_add_up_to_the_whole_history(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = ChartsWarmup(server.url, SYMBOLS)("BTC/USD:USD", "1m", HISTORY_START - 10 * MINUTE)
    monkeypatch.setattr(rest, "PAGE", 7)
    paged = ChartsWarmup(server.url, SYMBOLS)("BTC/USD:USD", "1m", HISTORY_START + 30_000)
    assert [c.open_time for c in whole] == list(
        range(HISTORY_START, HISTORY_START + 30 * MINUTE, MINUTE)
    )
    assert paged == whole[1:]  # since is inclusive and not rounded back
    venue = charts(server, "BTC/USD:USD", "1m", HISTORY_START)
    assert [[c.open_time, c.open, c.high, c.low, c.close, c.volume] for c in whole] == venue
    assert {c.symbol for c in whole} == {"BTC/USD:USD"}
