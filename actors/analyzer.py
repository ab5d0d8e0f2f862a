"""SymbolAnalyzer core: candle buffers per timeframe for one symbol, signals on entry-bar closes.

Decisions:

- Buffers: one :class:`CandleBuffer` per timeframe the strategy reads, holding at most
  ``max_bars`` closed candles in preallocated numpy columns of twice that capacity. An append
  writes one row (O(1)); when the columns are full the newest ``max_bars - 1`` rows move to fresh
  columns (amortised O(1)). The bars handed to ``analyze`` are contiguous read-only views, never
  copies, and since rows are only ever written past a view's end or into new columns, a view's
  data never changes after it is taken.
- A candle whose ``open_time`` is not newer than the last stored one of its timeframe
  (duplicate, out of order, replay) is dropped, as is an unclosed one. Candles of timeframes the
  strategy does not read are ignored.
- Only ``source == "live"`` candles of an *entry* timeframe the strategy reads trigger analysis;
  ``rest`` candles (warm-up, gap repair) only fill buffers. Analysis waits until every timeframe
  the strategy reads has at least one bar.
- A signal already proposed (same ``created_at``, timeframe and side) is not proposed again, so
  two entry timeframes closing together cannot repeat one signal.
- While the feed reports the symbol stale (``FeedStale`` until ``FeedFresh``) candles are still
  stored but nothing is proposed.
- A strategy that raises is logged (``strategy_failed``) and the bar yields nothing: one
  symbol's bad data must not take the analyzer (and its buffers) down.
- Candles closing at the same time should arrive longest timeframe first (the feed's job), so a
  bias bar is stored before the entry bar that reads it triggers analysis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import structlog

from actors.core import ALLOCATOR, Outbox, analyzer
from actors.messages import CandleClosed, FeedFresh, FeedStale, SignalProposed
from domain.models import Candle, Instrument
from domain.strategy import Bars, Strategy
from domain.strategy.base import timeframe_ms

log = structlog.get_logger(__name__)

DEFAULT_MAX_BARS = 1000


class CandleBuffer:
    """The newest ``max_bars`` closed candles of one timeframe, oldest first."""

    def __init__(self, timeframe: str, max_bars: int) -> None:
        if max_bars < 2:
            raise ValueError("max_bars must be at least 2")
        timeframe_ms(timeframe)
        self.timeframe = timeframe
        self.max_bars = max_bars
        self._times = np.empty(2 * max_bars, dtype=np.int64)
        self._values = np.empty((5, 2 * max_bars), dtype=np.float64)
        self._views = _read_only(self._times, self._values)
        self._end = 0
        self._last_time: int | None = None

    def __len__(self) -> int:
        return min(self._end, self.max_bars)

    @property
    def last_open_time(self) -> int | None:
        return self._last_time

    def append(self, candle: Candle) -> bool:
        """Store ``candle``; False (and nothing stored) unless it is newer than the last one."""
        if self._last_time is not None and candle.open_time <= self._last_time:
            return False
        if self._end == len(self._times):
            keep = self.max_bars - 1
            times = np.empty_like(self._times)
            values = np.empty_like(self._values)
            times[:keep] = self._times[self._end - keep : self._end]
            values[:, :keep] = self._values[:, self._end - keep : self._end]
            self._times, self._values, self._end = times, values, keep
            self._views = _read_only(times, values)
        i = self._end
        self._times[i] = candle.open_time
        self._values[:, i] = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        self._end = i + 1
        self._last_time = candle.open_time
        return True

    def bars(self) -> Bars:
        """The stored candles as :class:`Bars` (read-only views, no copy)."""
        lo = max(0, self._end - self.max_bars)
        hi = self._end
        times, o, h, low, c, v = self._views
        return Bars.unchecked(
            self.timeframe, times[lo:hi], o[lo:hi], h[lo:hi], low[lo:hi], c[lo:hi], v[lo:hi]
        )


def _read_only(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Read-only views of a buffer's columns (slices of them are read-only too)."""
    views = (times.view(), *(values[k].view() for k in range(5)))
    for view in views:
        view.setflags(write=False)
    return views


class AnalyzerCore:
    """One symbol's analyzer (see the module docstring); destination ``analyzer:<symbol>``."""

    def __init__(
        self,
        symbol: str,
        instrument: Instrument,
        strategy: Strategy,
        bias_timeframes: Sequence[str],
        entry_timeframes: Sequence[str],
        *,
        max_bars: int = DEFAULT_MAX_BARS,
    ) -> None:
        if instrument.symbol != symbol:
            raise ValueError(f"instrument {instrument.symbol!r} is not for {symbol!r}")
        self.name = analyzer(symbol)
        self.symbol = symbol
        self.instrument = instrument
        self.strategy = strategy
        self.bias_timeframes = tuple(bias_timeframes)
        self.entry_timeframes = tuple(entry_timeframes)
        self.triggers = frozenset(tf for tf in self.entry_timeframes if tf in strategy.timeframes)
        if not self.triggers:
            raise ValueError(
                f"strategy {strategy.name!r} reads {strategy.timeframes}, "
                f"none of the entry timeframes {self.entry_timeframes}"
            )
        self.buffers = {tf: CandleBuffer(tf, max_bars) for tf in strategy.timeframes}
        self.stale = False
        self.proposed = 0
        self._last_key: tuple[int, str, str] | None = None
        self._log = log.bind(actor=self.name, symbol=symbol)

    def handle(self, message: object, now: int) -> Outbox:
        """Store candles, track staleness, propose signals on live entry-bar closes."""
        if getattr(message, "symbol", None) != self.symbol:
            return []
        if isinstance(message, CandleClosed):
            return self._on_candle(message)
        if isinstance(message, FeedStale) and not self.stale:
            self.stale = True
            self._log.info("proposals_paused", since=message.since_ms)
        elif isinstance(message, FeedFresh) and self.stale:
            self.stale = False
            self._log.info("proposals_resumed", at=now)
        return []

    def bars(self) -> dict[str, Bars]:
        """Every buffer as :class:`Bars` (what ``analyze`` is given)."""
        return {tf: buffer.bars() for tf, buffer in self.buffers.items()}

    def _on_candle(self, message: CandleClosed) -> Outbox:
        buffer = self.buffers.get(message.timeframe)
        candle = message.candle
        if buffer is None or not candle.closed:
            return []
        if not buffer.append(candle):
            self._log.debug(
                "candle_dropped",
                timeframe=message.timeframe,
                open_time=candle.open_time,
                last=buffer.last_open_time,
            )
            return []
        if message.source != "live" or message.timeframe not in self.triggers or self.stale:
            return []
        if any(len(b) == 0 for b in self.buffers.values()):
            return []
        try:
            signal = self.strategy.analyze(self.bars(), self.instrument)
        except Exception:
            self._log.exception(
                "strategy_failed", timeframe=message.timeframe, bar_time=candle.open_time
            )
            return []
        if signal is None:
            return []
        key = (signal.created_at, signal.timeframe, signal.side.value)
        if key == self._last_key:
            return []
        self._last_key = key
        self.proposed += 1
        self._log.info(
            "signal_proposed",
            side=signal.side.value,
            score=signal.score,
            timeframe=signal.timeframe,
            bar_time=candle.open_time,
        )
        return [(ALLOCATOR, SignalProposed(signal, candle.open_time))]
