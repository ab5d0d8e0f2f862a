"""Candle histories for backtests: OHLCV files (one per symbol and timeframe) or the generator.

Decisions:

- A history is one *base* timeframe per run: every symbol's candles of that timeframe, oldest
  first, on each instrument's tick grid. The matching engine walks base candles; longer
  timeframes the strategy reads are aggregated from them, as the live feed aggregates 1m.
- Files: ``<VENUE SYMBOL>[_-]<timeframe>.csv|.parquet`` (``PF_XBTUSD_5m.csv``) or
  ``<VENUE SYMBOL>.csv`` (1m), in one directory or given one by one; columns
  ``timestamp,open,high,low,close,volume`` (see :func:`adapters.sim.marketdata.load_ohlcv`).
  When a symbol has several timeframes the shortest is used, and every symbol must share it.
- A file whose rows are not on its timeframe's grid (``open_time`` a multiple of the
  timeframe) is refused with the first offending row: aggregation and the engine's walk both
  assume aligned bars.
- The generator is the emulator's (:class:`~adapters.sim.marketdata.MarketGenerator`), so a
  seed gives the same minutes paper trading plays; longer base timeframes aggregate its 1m
  candles (open first, high max, low min, close last, volume sum), computed in numpy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from adapters.sim.instruments import SimInstrument
from adapters.sim.marketdata import MINUTE_MS, MarketGenerator, load_ohlcv
from domain.models import Candle
from domain.timeframes import TIMEFRAME_MS

_SUFFIXES = (".csv", ".parquet")
_CHUNK_MINUTES = 43_200  # 30 days of 1m candles per generator batch


class DatasetError(ValueError):
    """A history that cannot be used: missing, misnamed, misaligned or empty."""


@dataclass(frozen=True, slots=True)
class History:
    """Base-timeframe candles per venue symbol, oldest first."""

    timeframe: str
    candles: Mapping[str, Sequence[Candle]]

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.candles.values())

    def span(self) -> tuple[int, int]:
        """(first open time, last close time) over every symbol, in ms."""
        firsts = [c[0].open_time for c in self.candles.values() if c]
        lasts = [c[-1].open_time for c in self.candles.values() if c]
        if not firsts:
            raise DatasetError("the history holds no candles")
        return min(firsts), max(lasts) + TIMEFRAME_MS[self.timeframe]


def _file_key(path: Path, symbols: Sequence[str]) -> tuple[str, str] | None:
    """(venue symbol, timeframe) a file is named for, or None when it is not a data file."""
    if path.suffix.lower() not in _SUFFIXES:
        return None
    stem = path.stem
    for symbol in sorted(symbols, key=len, reverse=True):
        if stem == symbol:
            return symbol, "1m"
        match = re.fullmatch(re.escape(symbol) + r"[_-]([0-9]+[mhdw])", stem)
        if match:
            return symbol, match.group(1)
    return None


def load_history(
    path: Path, instruments: Mapping[str, SimInstrument], symbols: Sequence[str]
) -> History:
    """The candles of ``symbols`` (venue ids) from a file or a directory (module docstring)."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    found: dict[str, dict[str, Path]] = {}
    for file in files:
        key = _file_key(file, symbols)
        if key is not None:
            symbol, timeframe = key
            if timeframe not in TIMEFRAME_MS:
                raise DatasetError(f"{file}: unknown timeframe {timeframe!r}")
            found.setdefault(symbol, {})[timeframe] = file
    missing = [s for s in symbols if s not in found]
    if missing:
        raise DatasetError(
            f"{path}: no data for {', '.join(missing)} (files are named like PF_XBTUSD_5m.csv)"
        )
    chosen = {s: min(found[s], key=lambda tf: TIMEFRAME_MS[tf]) for s in symbols}
    timeframes = set(chosen.values())
    if len(timeframes) != 1:
        detail = ", ".join(f"{s}: {tf}" for s, tf in chosen.items())
        raise DatasetError(f"{path}: symbols must share one timeframe ({detail})")
    timeframe = timeframes.pop()
    step = TIMEFRAME_MS[timeframe]
    candles: dict[str, list[Candle]] = {}
    for symbol in symbols:
        file = found[symbol][timeframe]
        try:
            rows = load_ohlcv(file, symbol, instruments[symbol].instrument, timeframe)
        except (ValueError, KeyError, OSError) as err:
            raise DatasetError(f"{file}: {err}") from None
        for candle in rows:
            if candle.open_time % step:
                raise DatasetError(
                    f"{file}: row at {candle.open_time} is not on the {timeframe} grid"
                )
        if not rows:
            raise DatasetError(f"{file}: no rows")
        candles[symbol] = rows
    return History(timeframe, candles)


def generate_history(
    instruments: Mapping[str, SimInstrument],
    *,
    seed: int,
    start_ms: int,
    end_ms: int,
    timeframe: str = "1m",
) -> History:
    """The generator's candles of every instrument from ``start_ms`` (aligned down to the
    timeframe) up to ``end_ms``, aggregated to ``timeframe``."""
    if timeframe not in TIMEFRAME_MS:
        raise DatasetError(f"unknown timeframe {timeframe!r}")
    step = TIMEFRAME_MS[timeframe]
    if step % MINUTE_MS:
        raise DatasetError(f"timeframe {timeframe} is not a whole number of minutes")
    per_bar = step // MINUTE_MS
    start = start_ms - start_ms % step
    bars = max(0, (end_ms - start) // step)
    generator = MarketGenerator(instruments, seed=seed, start_ms=start)
    symbols = generator.symbols
    decimals = np.array([_decimals(instruments[s].instrument.tick_size) for s in symbols])

    def places(values: np.ndarray) -> np.ndarray:
        """Prices as the venue states them: the generator's grid multiples (3247.2000000000003)
        become the nearest float to the decimal price (3247.2), what REST bars give paper."""
        out = np.empty_like(values)
        for i, digits in enumerate(decimals.tolist()):
            out[:, i] = np.round(values[:, i], digits)
        return out

    out: dict[str, list[Candle]] = {s: [] for s in symbols}
    chunk_bars = max(1, _CHUNK_MINUTES // per_bar)
    done = 0
    while done < bars:
        n = min(chunk_bars, bars - done)
        batch = generator.next_batch(n * per_bar)
        shape = (n, per_bar, len(symbols))
        opens = places(batch.open.reshape(shape)[:, 0, :])
        highs = places(batch.high.reshape(shape).max(axis=1))
        lows = places(batch.low.reshape(shape).min(axis=1))
        closes = places(batch.close.reshape(shape)[:, -1, :])
        volumes = np.round(batch.volume.reshape(shape).sum(axis=1), 8)
        times = batch.open_time.reshape(n, per_bar)[:, 0].tolist()
        for i, symbol in enumerate(symbols):
            rows = zip(
                times,
                opens[:, i].tolist(),
                highs[:, i].tolist(),
                lows[:, i].tolist(),
                closes[:, i].tolist(),
                volumes[:, i].tolist(),
                strict=True,
            )
            out[symbol].extend(
                Candle(symbol, timeframe, t, o, h, lo, c, v) for t, o, h, lo, c, v in rows
            )
        done += n
    return History(timeframe, out)


def _decimals(tick: Decimal) -> int:
    exponent = tick.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


__all__ = ["DatasetError", "History", "generate_history", "load_history"]
