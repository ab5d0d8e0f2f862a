"""ChartsWarmup: history from the emulator's charts API, paged."""

from __future__ import annotations

import pytest

from adapters.marketdata import ChartsWarmup, rest
from adapters.sim.server import ServerHandle

from .conftest import MINUTE, SYMBOLS, charts

NOW = 1_735_689_600_000  # the emulator's clock: 30 warm-up minutes were played before it
HISTORY_START = NOW - 30 * MINUTE


def test_pages_add_up_to_the_whole_history(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = ChartsWarmup(server.url, SYMBOLS)("BTC/USD:USD", "1m", HISTORY_START - 10 * MINUTE, NOW)
    monkeypatch.setattr(rest, "PAGE", 7)
    paged = ChartsWarmup(server.url, SYMBOLS)("BTC/USD:USD", "1m", HISTORY_START + 30_000, NOW)
    assert [c.open_time for c in whole] == list(
        range(HISTORY_START, HISTORY_START + 30 * MINUTE, MINUTE)
    )
    assert paged == whole[1:]  # since is inclusive and not rounded back
    venue = charts(server, "BTC/USD:USD", "1m", HISTORY_START)
    assert [[c.open_time, c.open, c.high, c.low, c.close, c.volume] for c in whole] == venue
    assert {c.symbol for c in whole} == {"BTC/USD:USD"}


def test_only_candles_closed_by_until(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest candle the venue has is closed here (no trade of the next minute yet): it is
    kept when ``until`` says so, and nothing after ``until`` is fetched or kept."""
    monkeypatch.setattr(rest, "PAGE", 7)
    warmup = ChartsWarmup(server.url, SYMBOLS)
    assert warmup("BTC/USD:USD", "1m", HISTORY_START, NOW)[-1].open_time == NOW - MINUTE
    cut = warmup("BTC/USD:USD", "1m", HISTORY_START, HISTORY_START + 10 * MINUTE + 30_000)
    assert [c.open_time for c in cut] == list(
        range(HISTORY_START, HISTORY_START + 10 * MINUTE, MINUTE)
    )
    five = warmup("BTC/USD:USD", "5m", HISTORY_START, HISTORY_START + 12 * MINUTE)
    assert [c.open_time for c in five] == [HISTORY_START, HISTORY_START + 5 * MINUTE]
