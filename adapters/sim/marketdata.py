"""Market data for the simulator: a seeded regime generator and OHLCV file replay.

Generator model (per minute ``t``, per symbol ``i``; log returns):

- a **regime** (range / trend up / trend down) switches with probability ``regime_switch_prob``
  per minute to a regime drawn with ``regime_probs``; trends add ``+-trend_drift`` to the market
  factor, and each regime scales volatility by ``regime_vol``;
- **volatility spikes** start with probability ``spike_prob`` per minute and multiply volatility by
  ``spike_vol`` for ``spike_minutes``;
- returns are **correlated** through a common factor:
  ``r[t,i] = beta_i * (drift[t] + s[t]*z[t]) + idio_ratio * s[t] * e[t,i]``, ``s[t]`` = base
  volatility times the regime and spike multipliers, ``z`` and ``e`` standard normal;
- **gaps**: with probability ``gap_prob`` per minute the open jumps from the previous close by
  ``beta_i * N(0, gap_sd)`` (common to all symbols);
- wicks extend high/low beyond open/close by half-normal amounts scaled by the bar's volatility;
  volumes are log-normal around the instrument's daily volume / 1440, higher on larger moves.

Prices are floats internally and are put on each instrument's tick grid at the end (never below
one tick); volumes on the lot grid (at least one lot). Every random stream has its own child of
one ``numpy.random.SeedSequence`` and draws exactly one value per minute (per symbol), so the
series depend only on the seed: one call for 1000 minutes equals calls for 400 and then 600.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adapters.sim.instruments import SimInstrument
from domain.models import Candle, Instrument

REGIMES = ("range", "trend_up", "trend_down")
MINUTE_MS = 60_000
DEFAULT_START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Parameters of the generator (model in the module docstring); rates are per minute."""

    base_vol: float = 0.0008
    idio_ratio: float = 0.6
    regime_switch_prob: float = 1 / 240
    regime_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    trend_drift: float = 0.00015
    regime_vol: tuple[float, float, float] = (0.8, 1.1, 1.1)
    spike_prob: float = 1 / 1500
    spike_minutes: int = 30
    spike_vol: float = 4.0
    gap_prob: float = 1 / 3000
    gap_sd: float = 0.008
    wick_scale: float = 0.6
    volume_sd: float = 0.5


@dataclass(frozen=True)
class CandleBatch:
    """Generated 1m candles: arrays of shape (minutes, symbols), floats on the tick grid."""

    symbols: tuple[str, ...]
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    regime: np.ndarray  # index into REGIMES, per minute
    spike: np.ndarray  # volatility spike active, per minute
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index.update({s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.open_time)

    def candles(self, symbol: str) -> list[Candle]:
        """One symbol's candles as domain ``Candle`` objects."""
        i = self._index[symbol]
        rows = zip(
            self.open_time.tolist(),
            self.open[:, i].tolist(),
            self.high[:, i].tolist(),
            self.low[:, i].tolist(),
            self.close[:, i].tolist(),
            self.volume[:, i].tolist(),
            strict=True,
        )
        return [Candle(symbol, "1m", t, o, h, lo, c, v) for t, o, h, lo, c, v in rows]

    def minute(self, row: int) -> list[Candle]:
        """Every symbol's candle of one minute, in symbol order."""
        t = int(self.open_time[row])
        return [
            Candle(
                s,
                "1m",
                t,
                float(self.open[row, i]),
                float(self.high[row, i]),
                float(self.low[row, i]),
                float(self.close[row, i]),
                float(self.volume[row, i]),
            )
            for i, s in enumerate(self.symbols)
        ]

    def iter_minutes(self) -> Iterator[list[Candle]]:
        for row in range(len(self)):
            yield self.minute(row)


class MarketGenerator:
    """Seeded, stateful generator of correlated 1m candles for a set of instruments."""

    _STREAMS = ("switch", "pick", "spike", "market", "idio", "gap", "gap_size", "wick", "volume")

    def __init__(
        self,
        instruments: Sequence[SimInstrument] | Mapping[str, SimInstrument],
        seed: int,
        start_ms: int = DEFAULT_START_MS,
        config: GeneratorConfig | None = None,
    ) -> None:
        specs = (
            list(instruments.values()) if isinstance(instruments, Mapping) else list(instruments)
        )
        self.config = config or GeneratorConfig()
        self.symbols = tuple(s.symbol for s in specs)
        self.start_ms = start_ms
        children = np.random.SeedSequence(seed).spawn(len(self._STREAMS))
        self._rng = {
            name: np.random.Generator(np.random.PCG64(child))
            for name, child in zip(self._STREAMS, children, strict=True)
        }
        self._tick = np.array([float(s.instrument.tick_size) for s in specs])
        self._lot = np.array([float(s.instrument.lot_size) for s in specs])
        self._beta = np.array([s.beta for s in specs])
        self._base_volume = np.array([float(s.daily_volume) / 1440 for s in specs])
        self._log_price = np.log(np.array([float(s.start_price) for s in specs]))
        self._regime = 0
        self._spike_tail = np.zeros(self.config.spike_minutes, dtype=bool)
        self._minute = 0

    @property
    def minutes_generated(self) -> int:
        return self._minute

    def next_batch(self, minutes: int) -> CandleBatch:
        """The next ``minutes`` candles of every symbol, continuing the previous batch."""
        cfg, rng, n = self.config, self._rng, minutes
        regime = self._regimes(n)
        spike = self._spikes(n)
        vol = cfg.base_vol * np.asarray(cfg.regime_vol)[regime] * np.where(spike, cfg.spike_vol, 1)
        drift = np.array([0.0, cfg.trend_drift, -cfg.trend_drift])[regime]
        market = drift + vol * rng["market"].standard_normal(n)
        idio = cfg.idio_ratio * vol[:, None] * rng["idio"].standard_normal((n, len(self.symbols)))
        ret = self._beta[None, :] * market[:, None] + idio
        gap_on = rng["gap"].random(n) < cfg.gap_prob
        gap = np.where(gap_on, rng["gap_size"].standard_normal(n) * cfg.gap_sd, 0.0)
        close_log = self._log_price[None, :] + np.cumsum(ret + gap[:, None] * self._beta, axis=0)
        open_log = close_log - ret
        self._log_price = close_log[-1].copy()

        sym_vol = vol[:, None] * np.sqrt(self._beta**2 + cfg.idio_ratio**2)[None, :]
        wick = np.abs(rng["wick"].standard_normal((n, len(self.symbols), 2))) * cfg.wick_scale
        high = np.exp(np.maximum(open_log, close_log) + wick[..., 0] * sym_vol)
        low = np.exp(np.minimum(open_log, close_log) - wick[..., 1] * sym_vol)
        o, c = self._on_grid(np.exp(open_log)), self._on_grid(np.exp(close_log))
        h = np.maximum(self._on_grid(high), np.maximum(o, c))
        lo = np.minimum(self._on_grid(low), np.minimum(o, c))

        noise = rng["volume"].standard_normal((n, len(self.symbols))) * cfg.volume_sd
        activity = 1.0 + 2.0 * np.abs(ret) / (cfg.base_vol * np.sqrt(self._beta**2 + 0.36))
        raw_volume = self._base_volume * np.exp(noise - cfg.volume_sd**2 / 2) * activity
        volume = np.maximum(np.round(raw_volume / self._lot) * self._lot, self._lot)

        open_time = self.start_ms + (self._minute + np.arange(n, dtype=np.int64)) * MINUTE_MS
        self._minute += n
        return CandleBatch(self.symbols, open_time, o, h, lo, c, volume, regime, spike)

    def _on_grid(self, prices: np.ndarray) -> np.ndarray:
        units = np.maximum(np.round(prices / self._tick), 1.0)
        return units * self._tick

    def _regimes(self, n: int) -> np.ndarray:
        cfg = self.config
        switch = self._rng["switch"].random(n) < cfg.regime_switch_prob
        picks = np.searchsorted(np.cumsum(cfg.regime_probs), self._rng["pick"].random(n), "right")
        picks = np.minimum(picks, len(REGIMES) - 1)
        last_switch = np.maximum.accumulate(np.where(switch, np.arange(n), -1))
        regime = np.where(last_switch >= 0, picks[np.maximum(last_switch, 0)], self._regime)
        regime = regime.astype(np.int8)
        if n:
            self._regime = int(regime[-1])
        return regime

    def _spikes(self, n: int) -> np.ndarray:
        cfg = self.config
        starts = self._rng["spike"].random(n) < cfg.spike_prob
        window = cfg.spike_minutes
        combined = np.concatenate([self._spike_tail, starts])
        padded = np.concatenate([[0], np.cumsum(combined)])
        active = padded[window + 1 + np.arange(n)] - padded[1 + np.arange(n)] > 0
        self._spike_tail = combined[len(combined) - window :]
        return active


def load_ohlcv(
    path: str | Path, symbol: str, instrument: Instrument | None = None, timeframe: str = "1m"
) -> list[Candle]:
    """Read ``timestamp,open,high,low,close,volume`` from CSV (or parquet, if pandas can).

    ``timestamp`` is epoch milliseconds or an ISO-8601 string (UTC assumed when naive). Rows are
    sorted by time, duplicates keep the last row, and prices are put on ``instrument``'s tick grid
    when one is given. Parquet needs pyarrow or fastparquet, which Bastion does not install.
    """
    file = Path(path)
    if file.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(file)
        except ImportError as exc:
            raise ValueError(f"{file}: reading parquet needs pyarrow or fastparquet") from exc
    else:
        frame = pd.read_csv(file)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"{file}: missing columns {sorted(missing)}")
    stamps = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps):
        times = stamps.astype("int64")
    else:
        parsed = pd.to_datetime(stamps, utc=True, format="ISO8601")
        times = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    frame = frame.assign(_t=times.astype("int64")).sort_values("_t", kind="stable")
    frame = frame.drop_duplicates("_t", keep="last")
    candles = []
    for t, *raw, v in zip(
        frame["_t"].tolist(),
        frame["open"].astype(float).tolist(),
        frame["high"].astype(float).tolist(),
        frame["low"].astype(float).tolist(),
        frame["close"].astype(float).tolist(),
        frame["volume"].astype(float).tolist(),
        strict=True,
    ):
        prices = raw if instrument is None else [float(instrument.round_price(x)) for x in raw]
        o, h, lo, c = prices
        candles.append(Candle(symbol, timeframe, int(t), o, max(h, o, c), min(lo, o, c), c, v))
    return candles


def merge_minutes(streams: Mapping[str, Sequence[Candle]]) -> Iterator[list[Candle]]:
    """Interleave several symbols' candles into per-time groups (symbol order within a group)."""
    order = {s: i for i, s in enumerate(streams)}
    merged = heapq.merge(*streams.values(), key=lambda c: (c.open_time, order[c.symbol]))
    group: list[Candle] = []
    for candle in merged:
        if group and candle.open_time != group[0].open_time:
            yield group
            group = []
        group.append(candle)
    if group:
        yield group
