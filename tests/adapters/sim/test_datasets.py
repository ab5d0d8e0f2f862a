"""Backtest histories: OHLCV files by symbol and timeframe, and the generator aggregated."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from adapters.sim.datasets import DatasetError, generate_history, load_history
from adapters.sim.instruments import default_instruments
from adapters.sim.marketdata import MarketGenerator
from domain.models import Candle

INSTRUMENTS = default_instruments()
START = 1_735_689_600_000
HEADER = "timestamp,open,high,low,close,volume\n"


def test_the_generator_aggregates_its_minutes_into_longer_bars() -> None:
    history = generate_history(
        INSTRUMENTS, seed=9, start_ms=START + 60_000, end_ms=START + 3_600_000, timeframe="15m"
    )
    minutes = MarketGenerator(INSTRUMENTS, seed=9, start_ms=START).next_batch(60)
    assert history.timeframe == "15m"
    for i, symbol in enumerate(minutes.symbols):
        bars = history.candles[symbol]
        assert [b.open_time for b in bars] == [START + k * 900_000 for k in range(4)]
        for k, bar in enumerate(bars):
            rows = slice(15 * k, 15 * k + 15)
            assert bar.open == pytest.approx(minutes.open[rows, i][0], rel=1e-12)
            assert bar.close == pytest.approx(minutes.close[rows, i][-1], rel=1e-12)
            assert bar.high == pytest.approx(minutes.high[rows, i].max(), rel=1e-12)
            assert bar.low == pytest.approx(minutes.low[rows, i].min(), rel=1e-12)
            assert bar.volume == pytest.approx(float(np.sum(minutes.volume[rows, i])))
            assert bar.symbol == symbol and bar.timeframe == "15m"
    assert history.span() == (START, START + 3_600_000)


def test_one_minute_generation_is_the_emulators_series() -> None:
    history = generate_history(INSTRUMENTS, seed=2, start_ms=START, end_ms=START + 600_000)
    batch = MarketGenerator(INSTRUMENTS, seed=2, start_ms=START).next_batch(10)
    inst = INSTRUMENTS["PF_SOLUSD"].instrument

    def stated(price: float) -> float:  # the price as the venue states it, via Decimal
        return float(inst.round_price(price))

    # volumes rounded to 8 places, as the emulator plays them (generated volumes carry noise)
    played = [
        replace(
            c,
            open=stated(c.open),
            high=stated(c.high),
            low=stated(c.low),
            close=stated(c.close),
            volume=round(c.volume, 8),
        )
        for c in batch.candles("PF_SOLUSD")
    ]
    assert history.candles["PF_SOLUSD"] == played
    assert any(c.close != p.close for c, p in zip(batch.candles("PF_SOLUSD"), played, strict=True))


def _write(path: Path, rows: list[tuple[int, float]]) -> None:
    body = "".join(f"{t},{p},{p + 1},{p - 1},{p},5\n" for t, p in rows)
    path.write_text(HEADER + body)


def test_files_are_found_by_symbol_and_the_shortest_shared_timeframe(tmp_path: Path) -> None:
    _write(tmp_path / "PF_XBTUSD_5m.csv", [(START, 100.0), (START + 300_000, 101.0)])
    _write(tmp_path / "PF_XBTUSD-1h.csv", [(START, 100.0)])
    _write(tmp_path / "PF_ETHUSD_5m.csv", [(START + 300_000, 50.0)])
    (tmp_path / "notes.txt").write_text("not data")
    history = load_history(tmp_path, INSTRUMENTS, ["PF_XBTUSD", "PF_ETHUSD"])
    assert history.timeframe == "5m"
    assert history.candles["PF_XBTUSD"][1] == Candle(
        "PF_XBTUSD", "5m", START + 300_000, 101.0, 102.0, 100.0, 101.0, 5.0
    )
    assert history.count == 3
    assert history.span() == (START, START + 600_000)


def test_a_single_file_named_after_its_symbol_is_one_minute(tmp_path: Path) -> None:
    _write(tmp_path / "PF_SOLUSD.csv", [(START, 180.0), (START + 60_000, 181.0)])
    history = load_history(tmp_path / "PF_SOLUSD.csv", INSTRUMENTS, ["PF_SOLUSD"])
    assert history.timeframe == "1m" and len(history.candles["PF_SOLUSD"]) == 2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"PF_XBTUSD_5m.csv": [(START + 1, 1.0)]}, "is not on the 5m grid"),
        ({"PF_XBTUSD_5m.csv": [], "PF_ETHUSD_5m.csv": [(START, 1.0)]}, "no rows"),
        ({"PF_ETHUSD_5m.csv": [(START, 1.0)]}, "no data for PF_XBTUSD"),
        (
            {"PF_XBTUSD_5m.csv": [(START, 1.0)], "PF_ETHUSD_1h.csv": [(START, 1.0)]},
            "symbols must share one timeframe",
        ),
        ({"PF_XBTUSD_7m.csv": [(START, 1.0)]}, "unknown timeframe '7m'"),
    ],
)
def test_unusable_files_are_refused_by_name(
    tmp_path: Path, files: dict[str, list[tuple[int, float]]], message: str
) -> None:
    for name, rows in files.items():
        _write(tmp_path / name, rows)
    symbols = ["PF_XBTUSD", "PF_ETHUSD"] if len(files) > 1 else ["PF_XBTUSD"]
    if "no data for" in message:
        symbols = ["PF_XBTUSD", "PF_ETHUSD"]
    with pytest.raises(DatasetError, match=message):
        load_history(tmp_path, INSTRUMENTS, symbols)


def test_a_bad_column_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "PF_XBTUSD_5m.csv").write_text("time,open\n1,2\n")
    with pytest.raises(DatasetError, match=r"PF_XBTUSD_5m.csv: .*missing columns"):
        load_history(tmp_path, INSTRUMENTS, ["PF_XBTUSD"])
