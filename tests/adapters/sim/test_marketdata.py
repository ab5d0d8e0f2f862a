"""The seeded market data generator and OHLCV file replay."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from adapters.sim.engine import SimEngine
from adapters.sim.instruments import default_instruments
from adapters.sim.marketdata import (
    REGIMES,
    CandleBatch,
    GeneratorConfig,
    MarketGenerator,
    load_ohlcv,
    merge_minutes,
)

FIELDS = ("open_time", "open", "high", "low", "close", "volume", "regime", "spike")


@pytest.fixture(scope="module")
def big_batch() -> CandleBatch:
    return MarketGenerator(default_instruments(), seed=42).next_batch(100_000)


def test_same_seed_same_series_and_chunking_does_not_matter() -> None:
    specs = default_instruments()
    whole = MarketGenerator(specs, seed=3).next_batch(2_000)
    again = MarketGenerator(specs, seed=3).next_batch(2_000)
    chunked = MarketGenerator(specs, seed=3)
    parts = [chunked.next_batch(n) for n in (700, 1, 1_299)]
    for name in FIELDS:
        assert np.array_equal(getattr(whole, name), getattr(again, name))
        joined = np.concatenate([getattr(p, name) for p in parts])
        assert np.array_equal(getattr(whole, name), joined), name
    other = MarketGenerator(specs, seed=4).next_batch(2_000)
    assert not np.array_equal(whole.close, other.close)


def test_prices_on_tick_grid_positive_and_consistent(big_batch: CandleBatch) -> None:
    specs = default_instruments()
    for i, symbol in enumerate(big_batch.symbols):
        tick = float(specs[symbol].instrument.tick_size)
        lot = float(specs[symbol].instrument.lot_size)
        for name in ("open", "high", "low", "close"):
            units = getattr(big_batch, name)[:, i] / tick
            assert np.allclose(units, np.round(units), rtol=0, atol=1e-6), (symbol, name)
        assert (big_batch.low[:, i] >= tick).all()
        assert (
            big_batch.high[:, i] >= np.maximum(big_batch.open[:, i], big_batch.close[:, i])
        ).all()
        assert (
            big_batch.low[:, i] <= np.minimum(big_batch.open[:, i], big_batch.close[:, i])
        ).all()
        assert (big_batch.volume[:, i] >= lot).all()
    assert (np.diff(big_batch.open_time) == 60_000).all()


def test_regimes_and_spikes_shape_the_returns(big_batch: CandleBatch) -> None:
    returns = np.log(big_batch.close[:, 0] / big_batch.open[:, 0])
    by_regime = {name: returns[big_batch.regime == k] for k, name in enumerate(REGIMES)}
    assert all(len(r) > 5_000 for r in by_regime.values())
    assert by_regime["trend_up"].mean() > 0 > by_regime["trend_down"].mean()
    assert abs(by_regime["range"].mean()) < by_regime["trend_up"].mean()
    calm = np.abs(returns[~big_batch.spike]).mean()
    assert big_batch.spike.any()
    assert np.abs(returns[big_batch.spike]).mean() > 2.5 * calm


def test_symbols_are_correlated_but_not_identical(big_batch: CandleBatch) -> None:
    returns = np.diff(np.log(big_batch.close), axis=0)
    corr = np.corrcoef(returns.T)
    off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
    assert off_diagonal.min() > 0.5
    assert off_diagonal.max() < 0.95


def test_gaps_happen() -> None:
    config = GeneratorConfig(gap_prob=0.01, gap_sd=0.02)
    batch = MarketGenerator(default_instruments(), seed=8, config=config).next_batch(5_000)
    jumps = np.abs(np.log(batch.open[1:, 0] / batch.close[:-1, 0]))
    assert (jumps > 0.005).sum() > 10
    calm = MarketGenerator(default_instruments(), seed=8, config=GeneratorConfig(gap_prob=0))
    c = calm.next_batch(5_000)
    assert np.abs(np.log(c.open[1:, 0] / c.close[:-1, 0])).max() < 0.0005


def test_large_batches_stay_on_the_grid() -> None:
    """A long batch (the generator's speed is measured by ``python -m ops.bench sim``)."""
    batch = MarketGenerator(default_instruments(), seed=1).next_batch(200_000)
    assert len(batch) == 200_000
    assert (batch.low > 0).all()
    assert (batch.low <= batch.high).all()


def test_candles_feed_the_engine(big_batch: CandleBatch) -> None:
    engine = SimEngine(seed=1, start_ts=int(big_batch.open_time[0]))
    for row in range(50):
        engine.on_candles(big_batch.minute(row))
    close = Decimal(repr(float(big_batch.close[49, 0])))
    assert engine.last_price("PF_XBTUSD") == default_instruments()[
        "PF_XBTUSD"
    ].instrument.round_price(close)
    assert len(engine.ohlcv("PF_XBTUSD")) == 50
    assert big_batch.candles("PF_ETHUSD")[0].symbol == "PF_ETHUSD"


def test_csv_replay_ms_and_iso(tmp_path: Path) -> None:
    ms = tmp_path / "ms.csv"
    ms.write_text(
        "timestamp,open,high,low,close,volume\n"
        "1735689660000,95010.4,95100,94900,95050,12.5\n"
        "1735689600000,95000,95020,94990,95010,3\n"
    )
    iso = tmp_path / "iso.csv"
    iso.write_text(
        "Timestamp,Open,High,Low,Close,Volume\n"
        "2025-01-01T00:00:00Z,95000,95020,94990,95010,3\n"
        "2025-01-01T00:01:00+00:00,95010.4,95100,94900,95050,12.5\n"
    )
    inst = default_instruments()["PF_XBTUSD"].instrument
    from_ms = load_ohlcv(ms, "PF_XBTUSD", inst)
    from_iso = load_ohlcv(iso, "PF_XBTUSD", inst)
    assert from_ms == from_iso
    assert [c.open_time for c in from_ms] == [1735689600000, 1735689660000]
    assert from_ms[1].open == 95010.0  # put on the 1 USD tick grid
    assert from_ms[1].volume == 12.5
    engine = SimEngine(seed=1, start_ts=0)
    for group in merge_minutes({"PF_XBTUSD": from_ms}):
        engine.on_candles(group)
    assert engine.last_price("PF_XBTUSD") == Decimal(95050)


def test_csv_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close\n1,1,1,1,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_ohlcv(bad, "PF_XBTUSD")
    parquet = tmp_path / "x.parquet"
    parquet.write_bytes(b"")
    if (
        importlib.util.find_spec("pyarrow") is None
        and importlib.util.find_spec("fastparquet") is None
    ):
        with pytest.raises(ValueError, match="parquet"):
            load_ohlcv(parquet, "PF_XBTUSD")


def test_merge_minutes_groups_by_time() -> None:
    batch = MarketGenerator(default_instruments(), seed=2).next_batch(3)
    streams = {s: batch.candles(s) for s in ("PF_ETHUSD", "PF_XBTUSD")}
    groups = list(merge_minutes(streams))
    assert [[c.symbol for c in g] for g in groups] == [["PF_ETHUSD", "PF_XBTUSD"]] * 3
    assert [g[0].open_time for g in groups] == batch.open_time.tolist()
