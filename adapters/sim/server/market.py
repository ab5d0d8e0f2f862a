"""The venue's clock and market data: 1m candles from the seeded generator or an OHLCV file.

Decisions:

- The server clock (``clock_ms``) is simulated time. With ``speed > 0`` it runs at
  ``speed`` x wall time (60: one simulated minute per second); with ``speed == 0`` it moves only
  through ``/_sim/advance``. After a restart it resumes where it stopped.
- A 1m candle is played into the engine (``SimEngine.on_candles``, all symbols of the minute
  together) once the clock reaches its **close** (open + 60 s), so prices move once per simulated
  minute along the candle's path. The engine clock never passes the next candle's open.
- ``/_sim/price`` (``set_price``) moves a symbol at once; later candles of that symbol are scaled
  so the series continues from the set price instead of jumping back.
- Source: the generator (seeded, replayable: on restore it is re-run to the saved minute), or
  ``--data``: a CSV named after one venue symbol (``PF_XBTUSD.csv``) or a directory of such
  files. With a file, symbols without data keep their price; the replay ends with the file.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.sim.engine import SimEngine
from adapters.sim.marketdata import CandleBatch, MarketGenerator, load_ohlcv, merge_minutes
from domain.models import Candle

MINUTE_MS = 60_000
_CHUNK = 240


class GeneratorSource:
    def __init__(self, engine: SimEngine, seed: int, start_ms: int) -> None:
        self._gen = MarketGenerator(engine.instruments, seed=seed, start_ms=start_ms)
        self._batch: CandleBatch | None = None
        self._batch_start = 0

    def group(self, index: int) -> list[Candle] | None:
        batch = self._batch
        while batch is None or index >= self._batch_start + len(batch):
            if batch is not None:
                self._batch_start += len(batch)
            batch = self._batch = self._gen.next_batch(_CHUNK)
        return batch.minute(index - self._batch_start)


class FileSource:
    def __init__(self, engine: SimEngine, path: Path) -> None:
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        streams: dict[str, list[Candle]] = {}
        for file in files:
            symbol = next((s for s in engine.instruments if file.name.startswith(s)), None)
            if symbol is None:
                raise ValueError(f"{file}: name must start with a venue symbol (PF_XBTUSD.csv)")
            streams[symbol] = load_ohlcv(file, symbol, engine.instruments[symbol].instrument)
        if not streams:
            raise ValueError(f"{path}: no OHLCV files")
        self.groups = list(merge_minutes(streams))

    @property
    def first_open(self) -> int:
        return self.groups[0][0].open_time

    def group(self, index: int) -> list[Candle] | None:
        return self.groups[index] if index < len(self.groups) else None


class MarketDriver:
    """Plays candles into the engine as the simulated clock passes their close."""

    def __init__(
        self,
        engine: SimEngine,
        *,
        seed: int,
        start_ms: int,
        data_file: Path | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.data_file = data_file
        self.source: GeneratorSource | FileSource
        if state is not None:
            start_ms = int(state["start_ms"])
        if data_file is not None:
            self.source = FileSource(engine, data_file)
            start_ms = self.source.first_open
        else:
            self.source = GeneratorSource(engine, seed, start_ms)
        self.start_ms = start_ms
        self.played = 0
        self.clock_ms = start_ms
        self.scale: dict[str, Decimal] = {}
        self.last_close: dict[str, Decimal] = {}
        if state is not None:
            self.played = int(state["played"])
            self.clock_ms = int(state["clock_ms"])
            self.scale = {k: Decimal(v) for k, v in state["scale"].items()}
            self.last_close = {k: Decimal(v) for k, v in state["last_close"].items()}
            if self.played:
                self.source.group(self.played - 1)  # re-run the generator to where it was

    def to_state(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "played": self.played,
            "clock_ms": self.clock_ms,
            "scale": {k: str(v) for k, v in self.scale.items()},
            "last_close": {k: str(v) for k, v in self.last_close.items()},
            "data_file": None if self.data_file is None else str(self.data_file),
        }

    def next_open(self) -> int | None:
        group = self.source.group(self.played)
        return None if group is None else group[0].open_time

    def advance_to(self, target_ms: int) -> list[list[Candle]]:
        """Move the clock to ``target_ms`` (never back) and play every candle closed by then."""
        played: list[list[Candle]] = []
        while True:
            group = self.source.group(self.played)
            if group is None or group[0].open_time + MINUTE_MS > target_ms:
                break
            if group[0].open_time >= self.engine.now:
                scaled = [self._scaled(c) for c in group]
                self.engine.on_candles(scaled)
                played.append(scaled)
            for candle in group:
                self.last_close[candle.symbol] = Decimal(str(candle.close))
            self.played += 1
        self.clock_ms = max(self.clock_ms, target_ms)
        upcoming = self.next_open()
        engine_time = self.clock_ms if upcoming is None else min(self.clock_ms, upcoming)
        if engine_time > self.engine.now:
            self.engine.advance_time(engine_time)
        return played

    def rebase(self, symbol: str, price: Decimal) -> None:
        """Scale later candles of ``symbol`` so they continue from ``price``."""
        base = self.last_close.get(symbol, self.engine.instruments[symbol].start_price)
        if base > 0:
            self.scale[symbol] = price / base

    def _scaled(self, candle: Candle) -> Candle:
        volume = round(candle.volume, 8)  # generated volumes carry float noise (1.4281000000000001)
        k = self.scale.get(candle.symbol)
        if k is None or k == 1:
            return replace(candle, volume=volume)
        f = float(k)
        return replace(
            candle,
            open=candle.open * f,
            high=candle.high * f,
            low=candle.low * f,
            close=candle.close * f,
            volume=volume,
        )
